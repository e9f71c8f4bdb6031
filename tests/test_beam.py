"""Descriptors and selection as Beam pipelines on the DirectRunner with 2 worker
processes, against the local path: edges equal, descriptor files equal, exact
neighbours equal; a corrupt shard is reported, not fatal; a rerun resumes."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from sjft_tf import files
from sjft_tf.data import ingest, sources, synthetic
from sjft_tf.data import spec as spec_lib
from sjft_tf.descriptors import extract, store
from sjft_tf.selection import manifest, search, select

pytest.importorskip("apache_beam")
from sjft_tf.beam import descriptors as beam_descriptors  # noqa: E402

TWO_WORKERS = ["--runner=DirectRunner", "--direct_num_workers=2",
               "--direct_running_mode=multi_processing"]
BIN = os.path.dirname(sys.executable)


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
  """(target_dir, source_dir): the demo problem at 64 px; the target's training split
  in 3 shards and the source in 4, so every pass combines several partitions."""
  root = tmp_path_factory.mktemp("beam")
  synthetic.generate(str(root / "images"), synthetic.SyntheticConfig(
      source_images_per_class=3, num_target_classes=3,
      target_split_sizes={"train": 4, "test": 2}))
  for role, shard_size in (("target", 5), ("source", 20)):
    ingest.ingest(sources.list_folder(str(root / "images" / role)), ingest.IngestConfig(
        output_dir=str(root / role), dataset_name=f"demo_{role}", shard_size=shard_size,
        show_progress=False))
  return str(root / "target"), str(root / "source")


def _config(out):
  return extract.ExtractionConfig(output_dir=str(out), bank=extract.BankConfig(kind="gabor"),
                                  resize_size=64, crop_size=64, batch_size=16,
                                  lookup_cells=1024, show_progress=False)


@pytest.fixture(scope="module")
def both(datasets, tmp_path_factory):
  """(local descriptor folder, Beam descriptor folder) of the same settings."""
  target_dir, source_dir = datasets
  root = tmp_path_factory.mktemp("descriptors")
  local, beam = _config(root / "local"), _config(root / "beam")
  extract.extract(local, target_dir, source_dir)
  extract.extract(beam, target_dir, source_dir,
                  workers=beam_descriptors.BeamPasses(beam, TWO_WORKERS))
  return local.output_dir, beam.output_dir


def test_beam_descriptors_equal_the_local_ones(both):
  local, beam = both
  a, b = store.load_edges(local), store.load_edges(beam)
  for name in ("edges", "lower", "upper", "zero_floor", "channel_weights"):
    np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
  meta_local, meta_beam = store.load_metadata(local), store.load_metadata(beam)
  assert meta_local == meta_beam
  assert [len(e["shards"]) for e in meta_beam["datasets"]] == [3, 4]
  for entry in meta_beam["datasets"]:
    for shard in entry["shards"]:
      with np.load(os.path.join(local, shard)) as x, np.load(os.path.join(beam, shard)) as y:
        assert sorted(x.files) == sorted(y.files)
        for key in x.files:
          np.testing.assert_array_equal(x[key], y[key], err_msg=f"{shard}/{key}")
  assert json.load(open(os.path.join(beam, beam_descriptors.FAILURES_FILENAME))) == []
  assert not [n for _, _, names in os.walk(beam) for n in names if ".tmp" in n]


def test_a_damaged_or_stale_fit_file_is_fitted_again_to_the_same_edges(datasets, both,
                                                                      tmp_path):
  """A rerun reuses fit/ranges.npz and fit/counts.npz only when whole and made from the
  same images and settings: a stale ranges file and a truncated counts file are
  fitted again, and the edges equal the local fit's."""
  target_dir, _ = datasets
  local, beam = both
  out = tmp_path / "d"
  shutil.copytree(beam, out)
  fit = out / beam_descriptors.FIT_DIRNAME
  ranges = dict(np.load(fit / "ranges.npz"))
  files.save_npz_atomic(str(fit / "ranges.npz"), **{**ranges, "lower": ranges["lower"] - 1,
                                                     "inputs": np.array("other images")})
  with open(fit / "counts.npz", "r+b") as f:
    f.truncate(os.path.getsize(fit / "counts.npz") // 2)
  config = _config(out)
  edges = beam_descriptors.BeamPasses(config, TWO_WORKERS).fit_edges(
      extract.make_bank(config.bank, config.dtype_policy), spec_lib.load_spec(target_dir),
      "train")
  np.testing.assert_array_equal(edges.edges, store.load_edges(local).edges)
  assert files.npz_is_whole(str(fit / "counts.npz"))


def test_beam_exact_search_equals_the_local_one_and_resumes(both, tmp_path):
  local, _ = both
  params = manifest.SelectionParams(k0=3, max_neighbours=25, min_images_per_class=2)
  here, _ = select.initial_selection(local, str(tmp_path / "here"), params,
                                     search.SearchConfig(method="exact"),
                                     write_subset=False)
  config = search.SearchConfig(method="exact", pipeline_args=TWO_WORKERS)
  there, folder = select.initial_selection(local, str(tmp_path / "there"), params, config,
                                           write_subset=False)
  np.testing.assert_array_equal(here.neighbours, there.neighbours)
  np.testing.assert_array_equal(here.distances, there.distances)
  np.testing.assert_array_equal(here.selected, there.selected)
  assert here.retained_classes == there.retained_classes
  # One file per source partition; a rerun after a kill (a partition and the result
  # lost, a dead writer's temporary left) completes with the same neighbours.
  work = os.path.join(folder, "beam_search")
  partitions = sorted(os.listdir(os.path.join(work, "partitions")))
  assert partitions == [f"{i:05d}.npz" for i in range(4)]
  os.remove(os.path.join(work, "partitions", partitions[1]))
  os.remove(os.path.join(work, "neighbours.npz"))
  # A truncated partition, and one whole but searched in other source bytes (stale):
  # both searched again, neither read as it is.
  damaged = os.path.join(work, "partitions", partitions[2])
  with open(damaged, "r+b") as f:
    f.truncate(os.path.getsize(damaged) // 2)
  stale = os.path.join(work, "partitions", partitions[3])
  stored = dict(np.load(stale))
  files.save_npz_atomic(stale, **{**stored, "indices": stored["indices"][:, ::-1],
                                  files.INPUTS_KEY: np.array("another shard")})
  open(os.path.join(work, "partitions", f"00001.npz.tmp-{2**22 + 1}.npz"), "w").close()
  again, _ = select.initial_selection(local, str(tmp_path / "there"), params, config,
                                      write_subset=False, reuse=False)
  np.testing.assert_array_equal(here.neighbours, again.neighbours)
  assert sorted(os.listdir(os.path.join(work, "partitions"))) == partitions


def test_a_corrupt_source_shard_is_reported_not_fatal_and_the_cli_runs(datasets, both,
                                                                     tmp_path):
  target_dir, source_dir = datasets
  # The fit and the target's descriptors of the Beam folder are reused (the rerun of a
  # stage resumes): this run's pipeline extracts the source.
  out = tmp_path / "d"
  shutil.copytree(both[1], out, ignore=shutil.ignore_patterns("source"))
  broken = tmp_path / "source"
  subprocess.run(["cp", "-r", source_dir, str(broken)], check=True)
  shard = sorted(p for p in os.listdir(broken) if p.endswith(".tfrecord"))[2]
  data = (broken / shard).read_bytes()
  (broken / shard).write_bytes(data[:len(data) // 2])  # a truncated record
  done = subprocess.run(
      [os.path.join(BIN, "sjft-descriptors"), f"--target_dir={target_dir}",
       f"--source_dir={broken}", f"--output_dir={out}", "--bank=gabor",
       "--resize_size=64", "--crop_size=64", "--lookup_cells=1024", "--noprogress",
       "--runner=DirectRunner",
       "--beam_options=--direct_num_workers=2,--direct_running_mode=multi_processing"],
      capture_output=True, text=True, timeout=600,
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
  assert done.returncode == 0, done.stderr[-3000:]
  assert f"left out (rerun to retry): {broken / shard}" in done.stdout
  failures = json.load(open(out / beam_descriptors.FAILURES_FILENAME))
  assert [f["shard"] for f in failures] == [str(broken / shard)]
  source_entry = store.load_metadata(str(out))["datasets"][1]
  assert len(source_entry["shards"]) == 3 and shard.replace(".tfrecord", ".npz") not in " ".join(
      source_entry["shards"])
