"""The extraction stage: fit on the target, stream both datasets, resume, CLI."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from sjft_tf.data import ingest, pipeline, sources, synthetic
from sjft_tf.descriptors import extract, reference, store

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
  """(target_dir, source_dir): the demo problem at 64 px, small, in several shards."""
  root = tmp_path_factory.mktemp("extract")
  synthetic.generate(str(root / "images"), synthetic.SyntheticConfig(
      source_images_per_class=3, num_target_classes=3,
      target_split_sizes={"train": 4, "test": 2}))
  dirs = []
  for role in ("target", "source"):
    ingest.ingest(sources.list_folder(str(root / "images" / role)), ingest.IngestConfig(
        output_dir=str(root / role), dataset_name=f"demo_{role}", shard_size=20,
        show_progress=False))
    dirs.append(str(root / role))
  return dirs


def _config(out, **kwargs):
  # A small lookup grid compiles fast; results do not depend on it (test_descriptors).
  return extract.ExtractionConfig(output_dir=str(out), bank=extract.BankConfig(kind="gabor"),
                                  resize_size=64, crop_size=64, batch_size=16,
                                  lookup_cells=1024, show_progress=False, **kwargs)


def test_extraction_writes_what_the_reference_computes(datasets, tmp_path):
  target_dir, source_dir = datasets
  config = _config(tmp_path / "d")
  metadata = extract.extract(config, target_dir, source_dir, target_splits=("train", "test"))
  assert metadata["dimension"] == 48 * 32 and metadata["channel_groups"] == [["gabor", 48]] \
      or metadata["channel_groups"] == [("gabor", 48)]
  assert [(d["role"], d["split"], len(d["shards"])) for d in metadata["datasets"]] == [
      ("target", "train", 1), ("target", "test", 1), ("source", "train", 4)]
  edges = store.load_edges(config.output_dir)
  assert edges.edges.shape == (48, 31)
  np.testing.assert_allclose(edges.dimension_weights(), 1 / 48)
  source = store.load_all(config.output_dir, "source")
  assert source.descriptors.shape == (63, 1536)
  np.testing.assert_allclose(source.descriptors.reshape(63, 48, 32).sum(-1), 1, atol=2e-3)

  # Bins were fitted on the target train images: there they hold equal mass, except in
  # channels with a point mass at 0 (coarse levels, where fine textures average flat,
  # and odd filters across axis-aligned stripes; test_descriptors bounds those exactly).
  target = store.load_all(config.output_dir, "target", "train")
  shares = target.descriptors.reshape(-1, 48, 32).mean(0)
  equal = np.abs(shares - 1 / 32).max(axis=1) < 0.2 / 32
  assert equal.sum() >= 24

  # End to end against the reference, on the images as the reader delivers them.
  by_id = dict(zip(source.ids, source.descriptors))
  reader = pipeline.ReaderConfig(batch_size=8, resize_size=64, crop_size=64)
  batch = next(iter(pipeline.make_dataset(source_dir, "train", reader, training=False)))
  # A response within float rounding of an edge may land on either side: one such
  # response moves 2 / pixels of its map (64x64 down to 8x8 here); float16 storage
  # rounds each value to about 3 digits.
  pixels = np.repeat([64 * 64, 32 * 32, 16 * 16, 8 * 8], 12)
  for example_id, image in zip(batch["id"].numpy()[:3], batch["image"].numpy()[:3]):
    expected = reference.gabor_descriptor(image, edges.edges, edges.zero_floor)
    l1 = np.abs(by_id[example_id.decode()] - expected).reshape(48, 32).sum(-1)
    assert np.all(l1 <= 2 / pixels + 2e-3), l1


def test_extraction_resumes_and_refuses_other_settings(datasets, tmp_path):
  target_dir, source_dir = datasets
  config = _config(tmp_path / "d")
  extract.extract(config, target_dir, source_dir)
  shard_files = store.shard_paths(config.output_dir, "source")
  before = {p: store.load_shard(p) for p in shard_files}
  stamps = {p: os.stat(p).st_mtime_ns for p in shard_files}
  os.remove(shard_files[2])  # as if killed before this shard was written
  extract.extract(config, target_dir, source_dir)
  for path in shard_files:
    after = store.load_shard(path)
    np.testing.assert_array_equal(after.descriptors, before[path].descriptors)
    np.testing.assert_array_equal(after.ids, before[path].ids)
    if path != shard_files[2]:
      assert os.stat(path).st_mtime_ns == stamps[path]  # not recomputed
  with pytest.raises(ValueError, match="made with other settings"):
    extract.extract(_config(tmp_path / "d", num_bins=16), target_dir, source_dir)
  # A copy of the data (a moved tree) is the same data; ingested again from other files
  # it is not, and the descriptors of it on disk are refused.
  copies = {}
  for name, folder in (("target", target_dir), ("source", source_dir)):
    copies[name] = shutil.copytree(folder, tmp_path / name)
  extract.extract(config, str(copies["target"]), str(copies["source"]))
  assert all(os.stat(p).st_mtime_ns == stamps[p] for p in shard_files[3:])
  for name, message in (("source", "source descriptors of demo_source/train were made "
                                   "from other images"),
                        ("target", "fitted on other images")):
    record_path = sorted(copies[name].glob("train-*.tfrecord.json"))[-1]
    record_path.write_text(json.dumps({**json.loads(record_path.read_text()),
                                       "skipped": [{"id": "x"}]}))
    with pytest.raises(ValueError, match=message):
      extract.extract(config, str(copies["target"]), str(copies["source"]))


def test_uint8_storage_is_within_half_a_step():
  rng = np.random.default_rng(0)
  descriptors = rng.dirichlet(np.ones(32), size=(5, 3)).reshape(5, 96).astype(np.float32)
  encoded = store.encode(descriptors, "uint8")
  decoded = encoded["descriptors"].astype(np.float32) * encoded["scales"][:, None]
  assert encoded["descriptors"].dtype == np.uint8
  assert np.all(np.abs(decoded - descriptors) <= encoded["scales"][:, None] / 2 + 1e-7)
  with pytest.raises(ValueError, match="unknown storage 'int4'"):
    store.encode(descriptors, "int4")


def test_cli_describes_both_datasets(datasets, tmp_path):
  target_dir, source_dir = datasets
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  done = subprocess.run(
      [os.path.join(os.path.dirname(sys.executable), "sjft-descriptors"),
       f"--target_dir={target_dir}", f"--source_dir={source_dir}",
       f"--output_dir={tmp_path / 'd'}", "--bank=gabor", "--num_bins=16",
       "--resize_size=64", "--crop_size=64", "--storage=uint8", "--lookup_cells=1024",
       "--noprogress"],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr
  assert "768 values each (48 channels [gabor 48] x 16 bins, uint8)" in done.stdout
  assert "source: demo_source/train, 63 images in 4 shards" in done.stdout
  assert store.load_all(str(tmp_path / "d"), "source").descriptors.shape == (63, 768)
