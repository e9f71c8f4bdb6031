"""tf.data readers: evaluation covers every example once, augmentation is a true crop
and flip of the resized image, and seeded training input is repeatable."""

import numpy as np
import pytest

import image_factory
from sjft_tf.data import ingest, pipeline, sources


@pytest.fixture(scope="module")
def dataset_spec(tmp_path_factory):
  root = tmp_path_factory.mktemp("pipeline")
  rng = np.random.default_rng(0)
  for c in ("a", "b"):
    for i in range(6):
      image_factory.png_rgb(str(root / "in" / "train" / c / f"{i}.png"),
                            image_factory.random_rgb(rng, 30 + i, 40))
  return ingest.ingest(sources.list_folder(str(root / "in")), ingest.IngestConfig(
      output_dir=str(root / "out"), dataset_name="p", shard_size=4, show_progress=False))


def _resized(spec, resize_size):
  return {ex["id"].numpy().decode(): pipeline.resize_square(ex["image"], resize_size).numpy()
          for ex in pipeline.read_examples(spec, "train")}


def test_evaluation_is_the_centre_crop_of_every_example_once(dataset_spec):
  config = pipeline.ReaderConfig(batch_size=5, resize_size=20, crop_size=16)
  batches = list(pipeline.make_dataset(dataset_spec, "train", config, training=False))
  ids = [i.decode() for b in batches for i in b["id"].numpy()]
  assert len(ids) == 12 and len(set(ids)) == 12  # last partial batch kept
  resized = _resized(dataset_spec, 20)
  images = np.concatenate([b["image"].numpy() for b in batches])
  assert images.dtype == np.float32 and images.shape == (12, 16, 16, 3)
  for example_id, image in zip(ids, images):
    np.testing.assert_array_equal(image, resized[example_id][2:18, 2:18])


def _windows(image, crop):
  for flipped in (image, image[:, ::-1]):
    for top in range(image.shape[0] - crop + 1):
      for left in range(image.shape[1] - crop + 1):
        yield flipped[top:top + crop, left:left + crop]


def test_training_images_are_crops_of_the_resized_image_maybe_flipped(dataset_spec):
  config = pipeline.ReaderConfig(batch_size=4, resize_size=12, crop_size=8, seed=3,
                                 shuffle_buffer=16)
  batch = next(iter(pipeline.make_dataset(dataset_spec, "train", config, training=True)))
  assert batch["image"].shape == (4, 8, 8, 3)
  resized = _resized(dataset_spec, 12)
  for example_id, image in zip(batch["id"].numpy(), batch["image"].numpy()):
    source = resized[example_id.decode()].astype(np.float32)
    assert any(np.array_equal(image, w) for w in _windows(source, 8))


def _first_batches(spec, config, count=3):
  dataset = pipeline.make_dataset(spec, "train", config, training=True)
  return [(b["id"].numpy(), b["image"].numpy()) for b in dataset.take(count)]


def test_seeded_training_input_repeats_and_seeds_differ(dataset_spec):
  config = pipeline.ReaderConfig(batch_size=4, resize_size=20, crop_size=12, seed=7)
  first, again = _first_batches(dataset_spec, config), _first_batches(dataset_spec, config)
  for (ids_a, images_a), (ids_b, images_b) in zip(first, again):
    np.testing.assert_array_equal(ids_a, ids_b)
    np.testing.assert_array_equal(images_a, images_b)
  other = _first_batches(dataset_spec, pipeline.ReaderConfig(batch_size=4, resize_size=20, crop_size=12,
                                               seed=8))
  assert any(not np.array_equal(a[1], b[1]) for a, b in zip(first, other))
  # Training repeats forever: more batches than one epoch holds.
  assert len(_first_batches(dataset_spec, config, count=10)) == 10


def test_cache_changes_nothing(dataset_spec, tmp_path):
  plain = _first_batches(dataset_spec, pipeline.ReaderConfig(batch_size=4, resize_size=20, crop_size=12,
                                               seed=1))
  for cache in ("memory", str(tmp_path / "cache")):
    cached = _first_batches(dataset_spec, pipeline.ReaderConfig(batch_size=4, resize_size=20,
                                                  crop_size=12, seed=1, cache=cache))
    for (ids_a, images_a), (ids_b, images_b) in zip(plain, cached):
      np.testing.assert_array_equal(ids_a, ids_b)
      np.testing.assert_array_equal(images_a, images_b)


def test_crop_larger_than_resize_is_refused(dataset_spec):
  with pytest.raises(ValueError, match="crop_size 30 exceeds resize_size 20"):
    pipeline.make_dataset(dataset_spec, "train",
                          pipeline.ReaderConfig(resize_size=20, crop_size=30), training=False)


def test_unknown_split_names_the_spec(dataset_spec):
  with pytest.raises(KeyError, match="split 'test' is not in .*dataset_spec.json"):
    pipeline.read_examples(dataset_spec, "test")
