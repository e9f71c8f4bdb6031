"""The embedded demo problem: deterministic, and each target class nearest (in simple
low-level statistics) to the source class the generator related it to."""

import filecmp
import json
import os

import numpy as np
import pytest
from PIL import Image

from sjft_tf.data import synthetic


def low_level_stats(image: np.ndarray) -> np.ndarray:
  """Magnitude-weighted gradient orientations, gradient magnitudes, colour histograms."""
  pixels = image.astype(np.float32)
  gy, gx = np.gradient(pixels.mean(-1))
  magnitude, angle = np.hypot(gx, gy), np.mod(np.arctan2(gy, gx), np.pi)
  orientation = np.histogram(angle, 8, (0, np.pi), weights=magnitude)[0]
  parts = [orientation / (orientation.sum() + 1e-9),
           np.histogram(magnitude, 8, (0, 120))[0] / magnitude.size]
  parts += [np.histogram(pixels[..., c], 8, (0, 256))[0] / magnitude.size for c in range(3)]
  return np.concatenate(parts)


def _class_mean(folder, count):
  files = sorted(os.listdir(folder))[:count]
  return np.mean([low_level_stats(np.asarray(Image.open(os.path.join(folder, f))))
                  for f in files], axis=0)


CONFIG = dict(source_images_per_class=12, num_target_classes=5,
              target_split_sizes={"train": 8, "test": 2})


@pytest.mark.parametrize("seed", [0, 1])
def test_each_target_class_is_nearest_its_related_source_class(tmp_path, seed):
  record = synthetic.generate(str(tmp_path), synthetic.SyntheticConfig(seed=seed, **CONFIG))
  source_means = {c: _class_mean(tmp_path / "source" / "train" / c, 12)
                  for c in record["source_classes"]}
  assert len(record["related_source_classes"]) == 5
  for target, related in record["related_source_classes"].items():
    target_mean = _class_mean(tmp_path / "target" / "train" / target, 8)
    nearest = min(source_means, key=lambda c: np.abs(source_means[c] - target_mean).sum())
    assert [nearest] == related, target


def test_generation_is_deterministic_and_resumes(tmp_path):
  config = synthetic.SyntheticConfig(seed=3, source_images_per_class=2, num_target_classes=2,
                                     target_split_sizes={"train": 2})
  synthetic.generate(str(tmp_path / "a"), config)
  synthetic.generate(str(tmp_path / "b"), config)
  victim = tmp_path / "b" / "source" / "train" / synthetic.source_class_name(0) / "0001.png"
  os.remove(victim)  # as if interrupted
  synthetic.generate(str(tmp_path / "b"), config)
  for folder in ("source/train", "target/train"):
    for class_dir in os.listdir(tmp_path / "a" / folder):
      left, right = tmp_path / "a" / folder / class_dir, tmp_path / "b" / folder / class_dir
      names = sorted(os.listdir(left))
      assert names == sorted(os.listdir(right))
      assert all(filecmp.cmp(left / n, right / n, shallow=False) for n in names)
  with open(tmp_path / "a" / synthetic.GENERATOR_FILENAME) as f:
    record = json.load(f)
  assert record["config"]["seed"] == 3
  assert len(record["source_classes"]) == len(synthetic.SOURCE_TEXTURES)
  image = np.asarray(Image.open(victim))
  assert image.shape == (64, 64, 3) and image.dtype == np.uint8
