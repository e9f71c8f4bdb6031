"""Ingestion of the real datasets in ../shared/data, checked against their manifests.

Skipped with a reason where ../shared is absent (a user's clone).
"""

import collections
import csv
import os

import numpy as np
import pytest

from sjft_tf.data import archives, ingest, pipeline, sources

FLOWERS_ARCHIVE = "flowers102/flowers102_96px.tar.gz"
TINY_PARTS = ("tiny-imagenet-200/tinyimagenet200_train_part1.tar.gz",
              "tiny-imagenet-200/tinyimagenet200_val.tar.gz")


def _archive(shared_data_dir, relative):
  path = os.path.join(shared_data_dir, relative)
  if not os.path.exists(path):
    pytest.skip(f"{path} is absent")
  return path


def _ingest(root, out, classes):
  listed = sources.list_folder(root, classes=classes)
  return ingest.ingest(listed, ingest.IngestConfig(output_dir=str(out), dataset_name="real",
                                                   show_progress=False))


def test_flowers102_three_classes_match_the_official_manifest(shared_data_dir, test_cache_dir,
                                                              tmp_path):
  archive = _archive(shared_data_dir, FLOWERS_ARCHIVE)
  cache = os.path.join(test_cache_dir, "flowers")
  archives.extract(archive, cache, lambda n: n.endswith((".csv", ".txt")), tag="lists")
  with open(os.path.join(cache, "flowers102", "classes.txt")) as f:
    all_classes = f.read().split()
  chosen = [all_classes[0], all_classes[50], all_classes[101]]  # labels 1, 51, 102
  archives.extract(archive, cache, lambda n: any(f"/{c}/" in n for c in chosen),
                   tag="|".join(chosen))
  with open(os.path.join(cache, "flowers102", "manifest.csv")) as f:
    manifest = [row for row in csv.DictReader(f) if row["class_dir"] in chosen]

  spec = _ingest(os.path.join(cache, "flowers102"), tmp_path / "out", chosen)
  assert spec.class_names == chosen  # NNN_ prefixes sort into official label order
  expected_counts = collections.Counter((r["split"], r["class_dir"]) for r in manifest)
  for split in ("train", "val", "test"):
    assert spec.splits[split].class_counts == [expected_counts[split, c] for c in chosen]
  assert spec.splits["train"].class_counts == [10, 10, 10]
  assert ingest.skipped_inputs(str(tmp_path / "out")) == []

  official_label = {f"{r['split']}/{r['class_dir']}/{r['file']}": int(r["official_label_1based"])
                    for r in manifest}
  for split in ("train", "test"):
    for ex in pipeline.read_examples(spec, split).as_numpy_iterator():
      example_id = ex["id"].decode()
      assert official_label[example_id] == int(chosen[ex["label"]][:3])
      assert min(ex["image"].shape[:2]) == 96 and ex["image"].shape[2] == 3


def test_tiny_imagenet_three_classes_have_all_images(shared_data_dir, test_cache_dir, tmp_path):
  paths = [_archive(shared_data_dir, part) for part in TINY_PARTS]
  cache = os.path.join(test_cache_dir, "tiny")
  archives.extract(paths[1], cache, lambda n: n.endswith("classes.tsv"), tag="classes")
  with open(os.path.join(cache, "tiny-imagenet-200-subset", "classes.tsv")) as f:
    wnids = [line.split("\t")[0] for line in f.read().splitlines()[1:]]
  assert len(wnids) == 200
  chosen = sorted(wnids[:3])
  for path in paths:
    archives.extract(path, cache, lambda n: any(f"/{c}/" in n for c in chosen),
                     tag="|".join(chosen))

  spec = _ingest(os.path.join(cache, "tiny-imagenet-200-subset"), tmp_path / "out", chosen)
  assert spec.class_names == chosen
  assert spec.splits["train"].class_counts == [150, 150, 150]  # part 1: indices 0-149
  assert spec.splits["val"].class_counts == [50, 50, 50]
  assert ingest.skipped_inputs(str(tmp_path / "out")) == []
  grayscale = 0
  for ex in pipeline.read_examples(spec, "train").as_numpy_iterator():
    wnid, file_name = ex["id"].decode().split("/")[1:]
    assert file_name.startswith(wnid + "_") and chosen[ex["label"]] == wnid
    assert ex["image"].shape == (64, 64, 3)
    image = ex["image"].astype(int)
    grayscale += bool(np.array_equal(image[..., 0], image[..., 1])
                      and np.array_equal(image[..., 1], image[..., 2]))
  # About 1.8% of Tiny ImageNet is single-channel; those come back as RGB gray.
  assert grayscale < 0.1 * 450
