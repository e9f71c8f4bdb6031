"""Ingestion: folder/CSV/TFDS -> TFRecords -> tf.data, bad inputs, resume."""

import csv
import filecmp
import json
import os

import numpy as np
import pytest

import image_factory
from sjft_tf.data import ingest, pipeline, sources, spec as spec_lib

CLASSES = ["cat", "dog", "eel"]


def _tree(root, rng, splits=("train", "test"), per_class=4):
  """ROOT/<split>/<class>/<i>.png|jpg; returns {id: expected RGB pixels}."""
  expected = {}
  for split in splits:
    for c, name in enumerate(CLASSES):
      for i in range(per_class + c):
        pixels = image_factory.random_rgb(rng, 24 + i, 32)
        rel = f"{split}/{name}/{i}.png"
        expected[rel] = image_factory.png_rgb(os.path.join(root, rel), pixels)
  return expected


def _config(out, **kwargs):
  kwargs.setdefault("shard_size", 3)
  return ingest.IngestConfig(output_dir=str(out), dataset_name="toy", show_progress=False,
                             **kwargs)


def _read_all(spec, split):
  return {ex["id"].decode(): ex for ex in pipeline.read_examples(spec, split).as_numpy_iterator()}


def test_folder_round_trip_gives_same_pixels_and_labels(tmp_path):
  expected = _tree(tmp_path / "in", np.random.default_rng(0))
  spec = ingest.ingest(sources.list_folder(str(tmp_path / "in")), _config(tmp_path / "out"))
  assert spec.class_names == CLASSES
  assert spec.splits["train"].class_counts == [4, 5, 6]
  assert spec.splits["train"].num_examples == 15
  assert len(spec.splits["train"].shards) == 5
  reloaded = spec_lib.load_spec(str(tmp_path / "out"))
  assert reloaded.to_json_dict() == spec.to_json_dict()
  for split in ("train", "test"):
    examples = _read_all(reloaded, split)
    assert len(examples) == spec.splits[split].num_examples
    for example_id, ex in examples.items():
      class_name = example_id.split("/")[1]
      assert ex["label"] == CLASSES.index(class_name)
      assert ex["class_name"].decode() == class_name
      np.testing.assert_array_equal(ex["image"], expected[example_id])


def test_bad_inputs_are_skipped_counted_and_reported(tmp_path):
  root = tmp_path / "in"
  _tree(root, np.random.default_rng(1), splits=("train",))
  rng = np.random.default_rng(2)
  image_factory.write_bytes(str(root / "train/cat/zero.jpg"), b"")
  image_factory.truncated_jpeg(str(root / "train/dog/truncated.jpg"),
                               image_factory.random_rgb(rng, 64, 64))
  image_factory.write_bytes(str(root / "train/eel/notes.txt"), b"not an image at all\n")
  os.symlink(str(root / "nowhere.jpg"), str(root / "train/eel/dangling.jpg"))
  # Converted kinds are kept, as RGB.
  image_factory.jpeg_cmyk(str(root / "train/cat/cmyk.jpg"), image_factory.random_rgb(rng, 20, 20))
  image_factory.png_rgba(str(root / "train/dog/alpha.png"), image_factory.random_rgb(rng, 20, 20))
  image_factory.png_gray16(str(root / "train/eel/deep.png"), rng)

  image_factory.write_bytes(str(root / "train/cat/.DS_Store"), b"\0\0\0\1Bud1")
  out = tmp_path / "out"
  spec = ingest.ingest(sources.list_folder(str(root)), _config(out))
  assert spec.splits["train"].class_counts == [4 + 1, 5 + 1, 6 + 1]
  with open(out / ingest.REPORT_FILENAME) as f:
    assert json.load(f)["ignored_hidden"] == ["train/cat/.DS_Store"]
  skipped = {item["id"]: item["reason"] for item in ingest.skipped_inputs(str(out))}
  assert set(skipped) == {"train/cat/zero.jpg", "train/dog/truncated.jpg",
                          "train/eel/notes.txt", "train/eel/dangling.jpg"}
  assert skipped["train/cat/zero.jpg"].startswith("empty file")
  assert skipped["train/dog/truncated.jpg"].startswith("not a readable image")
  assert skipped["train/eel/notes.txt"].startswith("not a readable image")
  assert not any(" at 0x" in reason for reason in skipped.values())  # same every run
  assert skipped["train/eel/dangling.jpg"].startswith("unreadable path")
  with open(out / ingest.REPORT_FILENAME) as f:
    assert json.load(f)["converted"]["train"] == {"CMYK": 1, "I;16": 1, "RGBA": 1}
  examples = _read_all(spec, "train")
  assert all(ex["image"].shape[-1] == 3 for ex in examples.values())


def test_structural_errors_are_clear(tmp_path):
  with pytest.raises(FileNotFoundError, match="does not exist"):
    sources.list_folder(str(tmp_path / "missing"))
  os.makedirs(tmp_path / "empty_class" / "train" / "cat")
  with pytest.raises(ValueError, match="empty class: .*cat holds no files"):
    sources.list_folder(str(tmp_path / "empty_class"))
  image_factory.write_bytes(str(tmp_path / "all_bad/train/cat/x.jpg"), b"junk")
  with pytest.raises(ValueError, match=r"empty class: no readable image for \['cat'\]"):
    ingest.ingest(sources.list_folder(str(tmp_path / "all_bad")), _config(tmp_path / "o1"))
  # Nothing a rerun would take for a complete shard is left behind.
  assert not [n for n in os.listdir(tmp_path / "o1") if n.endswith((".tfrecord", ".tfrecord.json"))]
  (tmp_path / "header_only.csv").write_text("path,label\n")
  with pytest.raises(ValueError, match="header_only.csv: no rows after the header"):
    sources.list_csv(str(tmp_path / "header_only.csv"))


def test_corrupt_or_foreign_spec_is_a_clear_error(tmp_path):
  (tmp_path / spec_lib.SPEC_FILENAME).write_text('{"name": "x", "class_na')
  with pytest.raises(ValueError, match="dataset_spec.json is damaged .not valid JSON"):
    spec_lib.load_spec(str(tmp_path))
  # Garbage that is not even text names the file too (was: a bare codec error).
  (tmp_path / spec_lib.SPEC_FILENAME).write_bytes(np.random.default_rng(0).bytes(300))
  with pytest.raises(ValueError, match=f"{tmp_path}/dataset_spec.json is damaged.*sjft-ingest"):
    spec_lib.load_spec(str(tmp_path))
  (tmp_path / spec_lib.SPEC_FILENAME).write_text('{"format_version": 99}')
  with pytest.raises(ValueError, match="format_version 99, this sjft_tf reads 1"):
    spec_lib.load_spec(str(tmp_path))
  with pytest.raises(FileNotFoundError, match="run sjft-ingest first"):
    spec_lib.load_spec(str(tmp_path / "nowhere"))


def test_display_names_from_a_tsv_reach_the_spec(tmp_path):
  _tree(tmp_path / "in", np.random.default_rng(4), splits=("train",))
  names = tmp_path / "classes.tsv"
  # A header row and a row of a class not ingested are ignored; eel keeps its name.
  names.write_text("wnid\twords\ncat\tdomestic cat, house cat\ndog\tdog\nyak\tyak\n")
  spec = ingest.ingest(sources.list_folder(str(tmp_path / "in")),
                       _config(tmp_path / "out", display_names_file=str(names)))
  assert spec_lib.load_spec(str(tmp_path / "out")).readable_names() == [
      "domestic cat, house cat", "dog", "eel"]
  assert spec.class_names == CLASSES
  names.write_text("n01\tgoldfish\n")
  with pytest.raises(ValueError, match=r"classes.tsv: no row names one of the 3 classes"):
    ingest.ingest(sources.list_folder(str(tmp_path / "in")),
                  _config(tmp_path / "other", display_names_file=str(names)))


def test_class_list_must_match_existing_spec(tmp_path):
  _tree(tmp_path / "in", np.random.default_rng(3))
  out = tmp_path / "out"
  ingest.ingest(sources.list_folder(str(tmp_path / "in")), _config(out))
  fewer = sources.list_folder(str(tmp_path / "in"), classes=["cat", "dog"])
  with pytest.raises(ValueError, match=r"dataset_spec.json lists 3 classes .*\(missing \['eel'\]"):
    ingest.ingest(fewer, _config(out))


def _all_files(directory):
  return sorted(os.listdir(directory))


def test_interrupted_run_resumes_to_identical_output(tmp_path, monkeypatch):
  _tree(tmp_path / "in", np.random.default_rng(4))
  listed = lambda: sources.list_folder(str(tmp_path / "in"))
  clean = tmp_path / "clean"
  ingest.ingest(listed(), _config(clean))

  resumed = tmp_path / "resumed"
  real_write = ingest._write_shard
  written = []

  def failing_write(path, *args, **kwargs):
    if len(written) == 3:
      with open(f"{path}.tmp-999", "wb") as f:  # what a killed writer leaves behind
        f.write(b"partial")
      raise KeyboardInterrupt("killed")
    written.append(path)
    return real_write(path, *args, **kwargs)

  monkeypatch.setattr(ingest, "_write_shard", failing_write)
  with pytest.raises(KeyboardInterrupt):
    ingest.ingest(listed(), _config(resumed))
  assert not os.path.exists(resumed / spec_lib.SPEC_FILENAME)

  rewritten = []
  monkeypatch.setattr(ingest, "_write_shard",
                      lambda path, *a, **k: rewritten.append(path) or real_write(path, *a, **k))
  ingest.ingest(listed(), _config(resumed))
  assert not set(rewritten) & set(written)  # complete shards were not written again
  assert _all_files(resumed) == _all_files(clean)
  for name in _all_files(clean):
    if name != spec_lib.SPEC_FILENAME:
      assert filecmp.cmp(clean / name, resumed / name, shallow=False), name


def test_changed_input_is_refused_on_resume(tmp_path):
  _tree(tmp_path / "in", np.random.default_rng(5))
  out = tmp_path / "out"
  ingest.ingest(sources.list_folder(str(tmp_path / "in")), _config(out))
  image_factory.png_rgb(str(tmp_path / "in/train/cat/new.png"),
                        image_factory.random_rgb(np.random.default_rng(6), 10, 10))
  with pytest.raises(ValueError, match="different input listing"):
    ingest.ingest(sources.list_folder(str(tmp_path / "in")), _config(out))


def _write_csv(path, rows):
  with open(path, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["path", "label", "split"])
    writer.writerows(rows)


def test_csv_ids_and_output_are_stable_under_reordering(tmp_path):
  _tree(tmp_path / "in", np.random.default_rng(7))
  rows = [(f"in/{split}/{c}/{f}", c, split) for split in ("train", "test") for c in CLASSES
          for f in sorted(os.listdir(tmp_path / "in" / split / c))]
  _write_csv(tmp_path / "a.csv", rows)
  _write_csv(tmp_path / "b.csv", list(reversed(rows)))
  spec_a = ingest.ingest(sources.list_csv(str(tmp_path / "a.csv")), _config(tmp_path / "a"))
  spec_b = ingest.ingest(sources.list_csv(str(tmp_path / "b.csv")), _config(tmp_path / "b"))
  assert spec_a.splits == spec_b.splits
  for name in spec_a.splits["train"].shards + spec_a.splits["test"].shards:
    assert filecmp.cmp(tmp_path / "a" / name, tmp_path / "b" / name, shallow=False)
  ids = set(_read_all(spec_a, "train"))
  assert ids == {r[0] for r in rows if r[2] == "train"}


def test_csv_errors_name_the_line(tmp_path):
  _write_csv(tmp_path / "dup.csv", [("x.png", "a", "train"), ("x.png", "a", "train")])
  with pytest.raises(ValueError, match=r"dup.csv:3: duplicate path x.png"):
    sources.list_csv(str(tmp_path / "dup.csv"))
  (tmp_path / "nohead.csv").write_text("file,class\nx.png,a\n")
  with pytest.raises(ValueError, match="header must name the columns"):
    sources.list_csv(str(tmp_path / "nohead.csv"))


def test_split_fractions_are_stratified_and_order_free(tmp_path):
  records = [sources.ImageRecord(f"{c}/{i}.jpg", c) for c in CLASSES for i in range(10)]
  fractions = sources.parse_split_fractions("train=0.7,val=0.3")
  forward = sources.assign_splits(records, fractions)
  backward = sources.assign_splits(list(reversed(records)), fractions)
  for split in fractions:
    assert sorted(r.example_id for r in forward[split]) == sorted(
        r.example_id for r in backward[split])
  for c in CLASSES:
    assert sum(r.class_name == c for r in forward["train"]) == 7
  with pytest.raises(ValueError, match="sum to 1"):
    sources.parse_split_fractions("train=0.7,val=0.2")


def test_split_counts_take_a_fixed_number_per_class(tmp_path):
  records = [sources.ImageRecord(f"{c}/{i}.jpg", c)
             for c in CLASSES for i in range(8 + 2 * CLASSES.index(c))]
  counts = sources.parse_split_counts("train=3,val=2,test=rest")
  split = sources.assign_split_counts(records, counts)
  for c in CLASSES:
    per_class = {name: sum(r.class_name == c for r in split[name]) for name in split}
    assert per_class == {"train": 3, "val": 2, "test": 3 + 2 * CLASSES.index(c)}
  again = sources.assign_split_counts(list(reversed(records)), counts)
  assert {r.example_id for r in again["train"]} == {r.example_id for r in split["train"]}
  # Without "rest" the remainder is left out; too small a class is an error.
  only = sources.assign_split_counts(records, sources.parse_split_counts("train=4"))
  assert len(only["train"]) == 12 and set(only) == {"train"}
  with pytest.raises(ValueError, match="class cat has 8 images, fewer than the 9"):
    sources.assign_split_counts(records, sources.parse_split_counts("train=9"))
  with pytest.raises(ValueError, match="only the last may be name=rest"):
    sources.parse_split_counts("train=rest,test=3")
  # Through the folder listing, as sjft-ingest --layout=class --split_counts does.
  _tree(tmp_path / "in", np.random.default_rng(9), splits=("all",), per_class=5)
  listed = sources.list_folder(str(tmp_path / "in" / "all"), layout="class",
                               split_counts="train=2,test=rest")
  spec = ingest.ingest(listed, _config(tmp_path / "out"))
  assert spec.splits["train"].class_counts == [2, 2, 2]
  assert spec.splits["test"].class_counts == [3, 4, 5]
  with pytest.raises(ValueError, match="not both"):
    sources.list_folder(str(tmp_path / "in" / "all"), layout="class",
                        split_counts="train=2", split_fractions="train=1.0")


def test_tfds_dataset_ingests_offline_from_data_dir(tmp_path):
  import tensorflow_datasets as tfds

  rng = np.random.default_rng(8)
  images = [image_factory.random_rgb(rng, 16, 16) for _ in range(7)]

  class TinyShapes(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
      return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
          "image": tfds.features.Image(shape=(16, 16, 3), encoding_format="png"),
          "label": tfds.features.ClassLabel(names=["round", "square"])}))

    def _split_generators(self, dl_manager):
      return {"train": self._generate_examples(range(5)),
              "test": self._generate_examples(range(5, 7))}

    def _generate_examples(self, indices):
      for i in indices:
        yield i, {"image": images[i], "label": i % 2}

  data_dir = str(tmp_path / "tfds")
  TinyShapes(data_dir=data_dir).download_and_prepare()
  listed = sources.list_tfds("tiny_shapes", "train,val=test", data_dir=data_dir)
  spec = ingest.ingest(listed, _config(tmp_path / "out"))
  assert spec.class_names == ["round", "square"]
  assert spec.splits["train"].class_counts == [3, 2]
  assert spec.splits["val"].num_examples == 2
  decoded = {tuple(ex["image"].ravel()[:12]): ex["label"]
             for ex in _read_all(spec, "train").values()}
  for i in range(5):
    assert decoded[tuple(images[i].ravel()[:12])] == i % 2


_INGEST_SCRIPT = """
import sys
from sjft_tf.data import ingest, sources
ingest.ingest(sources.list_folder(sys.argv[1]), ingest.IngestConfig(
    output_dir=sys.argv[2], dataset_name="toy", show_progress=False, shard_size=3))
"""


def test_two_processes_write_identical_bytes_and_stale_temporaries_go(tmp_path):
  import subprocess, sys  # noqa: E401
  _tree(tmp_path / "in", np.random.default_rng(5))
  for out in ("a", "b"):
    done = subprocess.run([sys.executable, "-c", _INGEST_SCRIPT, str(tmp_path / "in"),
                           str(tmp_path / out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
  names = sorted(n for n in os.listdir(tmp_path / "a") if n.endswith(".tfrecord"))
  assert names and filecmp.cmpfiles(tmp_path / "a", tmp_path / "b", names, shallow=False)[0] == names
  # A temporary file of a writer that no longer runs (pid 2**22 + 1 is never alive).
  stale = tmp_path / "a" / f"train-00000-of-00005.tfrecord.tmp-{2**22 + 1}"
  stale.write_bytes(b"partial")
  ingest.ingest(sources.list_folder(str(tmp_path / "in")), _config(tmp_path / "a"))
  assert not stale.exists()


def test_split_arguments_that_would_not_act_are_refused(tmp_path):
  _tree(tmp_path / "in", np.random.default_rng(0))
  with pytest.raises(ValueError, match="already divided into split folders"):
    sources.list_folder(str(tmp_path / "in"), split_fractions="train=0.5,val=0.5")
  with pytest.raises(ValueError, match="split count 'train=x': 'x' is neither a whole"):
    sources.parse_split_counts("train=x,test=rest")
  with pytest.raises(ValueError, match="split fraction 'val=half': 'half' is not a number"):
    sources.parse_split_fractions("train=0.5,val=half")
