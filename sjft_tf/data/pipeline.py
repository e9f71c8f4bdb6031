"""tf.data readers for datasets written by `sjft_tf.data.ingest`.

Two layers:
  * `read_examples`: shards -> parsed, decoded examples (uint8 images at stored size);
  * `make_dataset`: the batched input of training (the paper's augmentation: resize to
    a square, random crop, horizontal flip) or evaluation (resize, centre crop).

Images come out as float32 in [0, 255]: each model applies its own preprocessing.
"""

import contextlib
import dataclasses

import numpy as np
import tensorflow as tf

from sjft_tf import bounds, errors
from sjft_tf.data import spec as spec_lib
from sjft_tf.data import tfrecord

AUTOTUNE = tf.data.AUTOTUNE


@dataclasses.dataclass
class ReaderConfig:
  """How to read a split.

  Attributes:
    batch_size: images per batch.
    resize_size: images are resized to resize_size x resize_size first (paper: 256).
    crop_size: then cropped to crop_size x crop_size, randomly in training and in the
      centre in evaluation (paper: 224).
    shuffle_buffer: examples in the training shuffle buffer.
    cache: "" for no cache, "memory", or a file path prefix for an on-disk cache; the
      cache holds resized float32 images, before augmentation (4 bytes a value: cache
      targets, not a large source).
    seed: makes shuffling and augmentation repeatable; None draws a fresh seed.
    deterministic: keep element order fixed under parallelism (slower); implied by a
      seed.
    repeat: in training, repeat the data forever (for model.fit with steps_per_epoch).
    drop_remainder: drop the last partial batch (training default).
    min_crop_area: training crops: 0 a fixed-size window, > 0 a random-size window
      (`random_crop_and_flip`).
    crop_padding: training crops: pixels of reflection added to each side of the
      resized square before the crop (`random_crop_and_flip`; CIFAR's 4).
  """
  batch_size: int = bounds.field(32, lower=1)
  resize_size: int = bounds.field(256, lower=1)
  crop_size: int = bounds.field(224, lower=1)
  shuffle_buffer: int = bounds.field(2048, lower=1)
  cache: str = ""
  seed: int | None = None
  deterministic: bool = False
  repeat: bool = True
  drop_remainder: bool = True
  min_crop_area: float = bounds.field(0.0, lower=0.0, upper=1.0)
  crop_padding: int = bounds.field(0, lower=0)

  def __post_init__(self):
    bounds.check(self)


_JPEG_RATIOS = (1, 2, 4, 8)


def decode_image(encoded: tf.Tensor, image_format: tf.Tensor,
                 jpeg_ratio_index: tf.Tensor | int = 0) -> tf.Tensor:
  """Decodes stored JPEG or PNG bytes to uint8 [height, width, 3]: the package's one
  image decoder (training, evaluation, descriptors and the exported model's).

  JPEGs use the accurate integer DCT, which matches what PIL (used at ingest) decodes,
  at scale 1 / _JPEG_RATIOS[jpeg_ratio_index] (the DCT-domain shrink averages, so it
  does not alias).
  Args:
    encoded, image_format: the stored bytes and "jpeg" or "png" (string scalars).
    jpeg_ratio_index: int32 scalar, index into _JPEG_RATIOS (ignored for PNG).
  """
  branch = tf.where(tf.equal(image_format, "jpeg"), jpeg_ratio_index + 1, 0)
  decoders = [lambda: tf.io.decode_png(encoded, channels=3)] + [
      lambda r=r: tf.io.decode_jpeg(encoded, channels=3, ratio=r,
                                    dct_method="INTEGER_ACCURATE")
      for r in _JPEG_RATIOS]
  image = tf.switch_case(branch, decoders)
  image.set_shape([None, None, 3])
  return image


def _decoded(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
  features = tfrecord.parse_example(serialized)
  image = decode_image(features[tfrecord.IMAGE_KEY], features[tfrecord.FORMAT_KEY])
  return {"image": image, "label": features[tfrecord.LABEL_KEY],
          "id": features[tfrecord.ID_KEY], "class_name": features[tfrecord.CLASS_NAME_KEY]}


def _options(deterministic: bool) -> tf.data.Options:
  options = tf.data.Options()
  options.deterministic = deterministic
  return options


def _shards(spec: spec_lib.DatasetSpec | str, split: str, shuffle_files_seed: int | None,
            deterministic: bool, shard_indices=None) -> tf.data.Dataset:
  """Serialised examples of `split` (or of its shards `shard_indices`), interleaved.

  Args:
    shuffle_files_seed: shuffle the shard order with this seed (the same order on
      every pass: a function of the seed alone); None keeps spec order.
  """
  if isinstance(spec, str):
    spec = spec_lib.load_spec(spec)
  paths = spec.checked_shard_paths(split, shard_indices)
  files = tf.data.Dataset.from_tensor_slices(paths)
  if shuffle_files_seed is not None:
    files = files.shuffle(len(paths), seed=shuffle_files_seed, reshuffle_each_iteration=False)
  return files.interleave(tf.data.TFRecordDataset, cycle_length=AUTOTUNE,
                          num_parallel_calls=AUTOTUNE, deterministic=deterministic)


def _decoded_resized(serialized: tf.Tensor, size: int) -> dict[str, tf.Tensor]:
  features = tfrecord.parse_example(serialized)
  image = decode_resized(features[tfrecord.IMAGE_KEY], features[tfrecord.FORMAT_KEY],
                         features[tfrecord.HEIGHT_KEY], features[tfrecord.WIDTH_KEY], size)
  return {"image": image, "label": features[tfrecord.LABEL_KEY],
          "id": features[tfrecord.ID_KEY]}


def read_examples(spec: spec_lib.DatasetSpec | str, split: str,
                  shuffle_files_seed: int | None = None,
                  deterministic: bool = True) -> tf.data.Dataset:
  """Examples of `split`, decoded, unbatched.

  Args:
    spec: a DatasetSpec or the folder holding it.
    split: split name.
    shuffle_files_seed: shuffle the shard order with this seed; None keeps spec order.
    deterministic: keep the order of examples fixed (spec order when not shuffled).
  Returns:
    Dataset of {"image": uint8 [h, w, 3], "label": int64 [], "id": string [],
    "class_name": string []}.
  """
  return _shards(spec, split, shuffle_files_seed, deterministic).map(
      _decoded, num_parallel_calls=AUTOTUNE,
      deterministic=deterministic).with_options(_options(deterministic))


def resize_square(image: tf.Tensor, size: int) -> tf.Tensor:
  """Resizes uint8 [h, w, 3] to float32 [size, size, 3] in [0, 255] (bilinear).

  Callers shrink by less than 2x here (see `decode_resized`), where bilinear without
  antialiasing loses nothing visible and is 5x faster than antialiased resizing.
  """
  return tf.image.resize(image, [size, size], method="bilinear")


def decode_resized(encoded: tf.Tensor, image_format: tf.Tensor, height: tf.Tensor,
                   width: tf.Tensor, size: int) -> tf.Tensor:
  """Decodes and resizes to float32 [size, size, 3], most of the shrink done by libjpeg.

  A JPEG is decoded at 1/2, 1/4 or 1/8 scale (in the DCT domain, which averages, so
  it does not alias) when its shorter side stays >= size; the rest is bilinear.
  Args:
    encoded, image_format: the stored bytes and "jpeg" or "png".
    height, width: the stored image size in pixels (int64 scalars).
    size: output side in pixels.
  """
  shorter = tf.minimum(height, width)
  ratio_index = tf.reduce_sum(tf.cast(
      [shorter // r >= size for r in _JPEG_RATIOS[1:]], tf.int32))
  return resize_square(decode_image(encoded, image_format, ratio_index), size)


def centre_crop(image: tf.Tensor, crop_size: int) -> tf.Tensor:
  """Crops the central crop_size x crop_size window of [h, w, c]."""
  height, width = tf.shape(image)[0], tf.shape(image)[1]
  top, left = (height - crop_size) // 2, (width - crop_size) // 2
  return image[top:top + crop_size, left:left + crop_size]


def ten_crops(image: tf.Tensor, crop_size: int) -> tf.Tensor:
  """The multi-crop test views of [h, w, 3]: centre, top-left, top-right, bottom-left,
  bottom-right crop_size windows, then the same five flipped left-right.

  Returns:
    [10, crop_size, crop_size, 3].
  """
  height, width = tf.shape(image)[0], tf.shape(image)[1]
  bottom, right = height - crop_size, width - crop_size
  corners = [((height - crop_size) // 2, (width - crop_size) // 2), (0, 0), (0, right),
             (bottom, 0), (bottom, right)]
  views = tf.stack([image[top:top + crop_size, left:left + crop_size]
                    for top, left in corners])
  return tf.concat([views, tf.reverse(views, axis=[2])], axis=0)


def random_crop_and_flip(image: tf.Tensor, crop_size: int, seed: tf.Tensor,
                         min_crop_area: float = 0.0, padding: int = 0) -> tf.Tensor:
  """Random crop_size x crop_size window of [h, w, 3], flipped left-right half the time.

  Args:
    seed: int64 [2], the stateless seed of this example (repeatable augmentation).
    min_crop_area: 0: a fixed-size window (the paper's). > 0: a window of
      min_crop_area to all of the image's area and aspect 3/4 to 4/3, resized to
      crop_size (bilinear): Inception's scale augmentation.
    padding: the image is first padded by this many pixels on each side, reflected
      at its border: with crop_size the image's side, CIFAR's pad-and-crop, a
      translation of up to `padding` pixels (0 <= padding < the image's side).
  """
  crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
  if padding:
    image = tf.pad(image, [[padding, padding], [padding, padding], [0, 0]], mode="REFLECT")
  if min_crop_area > 0:
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image), tf.zeros([1, 0, 4]), crop_seed, min_object_covered=0.0,
        aspect_ratio_range=(3 / 4, 4 / 3), area_range=(min_crop_area, 1.0),
        max_attempts=10, use_image_if_no_bounding_boxes=True)
    cropped = tf.image.resize(tf.slice(image, begin, size), [crop_size, crop_size],
                              method="bilinear")
    cropped.set_shape([crop_size, crop_size, 3])
  else:
    cropped = tf.image.stateless_random_crop(image, [crop_size, crop_size, 3], crop_seed)
  return tf.image.stateless_random_flip_left_right(cropped, flip_seed)


@contextlib.contextmanager
def naming_damaged_shards(spec: spec_lib.DatasetSpec | str, splits, shard_indices=None):
  """Within the block, a TFRecord read failure (DataLossError: a record whose length or
  CRC does not check, as in a shard overwritten with garbage of its size) becomes a
  ValueError naming the shard: the ones read (`shard_indices` of the one split), or
  those of `splits` whose bytes differ from their ingest record."""
  try:
    yield
  except tf.errors.DataLossError as error:
    if isinstance(spec, str):
      spec = spec_lib.load_spec(spec)
    splits = [splits] if isinstance(splits, str) else list(splits)
    if shard_indices is not None:
      paths = [spec.shard_paths(splits[0])[i] for i in shard_indices]
    else:
      paths = [p for split in splits for p in spec.damaged_shards(split)]
    named = ", ".join(paths) if paths else f"a shard of {spec.directory} ({splits})"
    reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
    raise errors.InputError(f"{named} is damaged ({reason}): rerun sjft-ingest with the same "
                            f"flags (it remakes the shard)") from error


def _check_sizes(config: ReaderConfig) -> None:
  if config.crop_padding >= config.resize_size:
    raise errors.InputError(f"crop_padding {config.crop_padding} must be below resize_size "
                            f"{config.resize_size} (a reflection is at most the image's side)")
  if config.crop_size > config.resize_size + 2 * config.crop_padding:
    raise errors.InputError(f"crop_size {config.crop_size} exceeds resize_size "
                            f"{config.resize_size}")


def make_dataset(spec: spec_lib.DatasetSpec | str, split: str, config: ReaderConfig,
                 training: bool, shard_indices=None) -> tf.data.Dataset:
  """The batched input of training or evaluation.

  Args:
    shard_indices: read only these shards of the split (None: all).

  Returns:
    Dataset of {"image": float32 [batch, crop, crop, 3] in [0, 255], "label": int64
    [batch], "id": string [batch]}. Evaluation keeps spec order and every example.
  """
  _check_sizes(config)
  deterministic = config.deterministic or config.seed is not None or not training
  seed = config.seed
  if training and seed is None:
    seed = int(np.random.SeedSequence().generate_state(1)[0])
  # Evaluation without a cache crops in the decoding map: one pass per element.
  crop_now = not training and not config.cache

  def decode(serialized):
    ex = _decoded_resized(serialized, config.resize_size)
    return {**ex, "image": centre_crop(ex["image"], config.crop_size)} if crop_now else ex

  dataset = _shards(spec, split, seed if training else None, deterministic,
                    shard_indices).map(
      decode, num_parallel_calls=AUTOTUNE, deterministic=deterministic)
  if config.cache:
    dataset = dataset.cache("" if config.cache == "memory" else config.cache)
  if not training and not crop_now:
    dataset = dataset.map(
        lambda ex: {**ex, "image": centre_crop(ex["image"], config.crop_size)},
        num_parallel_calls=AUTOTUNE, deterministic=deterministic)
  if training:
    # Repeated, then one shuffle over the stream seeded once. Not
    # reshuffle_each_iteration: that draws each pass's order from a seed generator
    # that other datasets of the same seed in the process advance, so a run's batches
    # would depend on what ran before it in the process.
    if config.repeat:
      dataset = dataset.repeat()
    dataset = dataset.shuffle(config.shuffle_buffer, seed=seed, reshuffle_each_iteration=False)
    # Each element's augmentation seed is (seed, its position in the stream), so a
    # seeded run augments identically whatever the parallelism.
    dataset = dataset.enumerate().map(
        lambda index, ex: {
            **ex, "image": random_crop_and_flip(
                ex["image"], config.crop_size,
                tf.stack([tf.constant(seed, tf.int64), index]), config.min_crop_area,
                config.crop_padding)},
        num_parallel_calls=AUTOTUNE, deterministic=deterministic)
  dataset = dataset.batch(config.batch_size,
                          drop_remainder=training and config.drop_remainder,
                          num_parallel_calls=AUTOTUNE, deterministic=deterministic)
  return dataset.prefetch(AUTOTUNE).with_options(_options(deterministic))


def make_multicrop_dataset(spec: spec_lib.DatasetSpec | str, split: str,
                           config: ReaderConfig) -> tf.data.Dataset:
  """Evaluation input with the ten views of `ten_crops` per image, in spec order.

  Returns:
    Dataset of {"image": float32 [batch, 10, crop, crop, 3] in [0, 255], "label": int64
    [batch], "id": string [batch]}.
  """
  _check_sizes(config)

  def views(serialized):
    ex = _decoded_resized(serialized, config.resize_size)
    return {**ex, "image": ten_crops(ex["image"], config.crop_size)}

  return (_shards(spec, split, None, True).map(views, num_parallel_calls=AUTOTUNE)
          .batch(config.batch_size, num_parallel_calls=AUTOTUNE)
          .prefetch(AUTOTUNE).with_options(_options(True)))


def load_encoded(spec: spec_lib.DatasetSpec | str, splits, ids=None,
                 max_bytes: float | None = None) -> dict[str, np.ndarray]:
  """The stored (still encoded) images of `splits`, in memory, for random access.

  Args:
    spec: a DatasetSpec or the folder holding it.
    splits: split names to read.
    ids: keep only these example ids, returned in this order; every one must exist.
    max_bytes: stop with MemoryError as soon as the encoded images read exceed this.
  Returns:
    {"id": str [n], "label": int64 [n], "encoded": object [n] (bytes), "format": object
    [n] (b"jpeg" / b"png"), "height", "width": int64 [n]}.
  """
  if isinstance(spec, str):
    spec = spec_lib.load_spec(spec)
  paths = [p for split in splits for p in spec.checked_shard_paths(split)]
  keys = {"id": tfrecord.ID_KEY, "label": tfrecord.LABEL_KEY, "encoded": tfrecord.IMAGE_KEY,
          "format": tfrecord.FORMAT_KEY, "height": tfrecord.HEIGHT_KEY,
          "width": tfrecord.WIDTH_KEY}
  dataset = tf.data.TFRecordDataset(paths, num_parallel_reads=AUTOTUNE).map(
      lambda serialized: {name: tfrecord.parse_example(serialized)[key]
                          for name, key in keys.items()}, num_parallel_calls=AUTOTUNE)
  if ids is not None:
    ids = np.asarray(ids).astype(str)
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(ids, np.arange(len(ids), dtype=np.int64)), -1)
    dataset = dataset.filter(lambda ex: table.lookup(ex["id"]) >= 0)
  parts = {name: [] for name in keys}
  total_bytes = 0
  with naming_damaged_shards(spec, splits):
    for batch in dataset.batch(4096).as_numpy_iterator():
      total_bytes += sum(len(b) for b in batch["encoded"])
      if max_bytes is not None and total_bytes > max_bytes:
        raise MemoryError(f"the images read from {spec.directory} ({list(splits)}) exceed "
                          f"{max_bytes / 2**30:.2f} GiB encoded")
      for name in keys:
        parts[name].append(batch[name])
  loaded = {name: np.concatenate(values) if values else np.zeros(0, object)
            for name, values in parts.items()}
  loaded["id"] = loaded["id"].astype(str)
  if ids is None:
    return loaded
  row_of = {example_id: row for row, example_id in enumerate(loaded["id"].tolist())}
  missing = [i for i in ids.tolist() if i not in row_of]
  if missing:
    raise errors.InputError(f"{len(missing)} ids are not in splits {list(splits)} of "
                            f"{spec.directory}, e.g. {missing[:3]}")
  rows = np.array([row_of[i] for i in ids.tolist()], np.int64)
  return {name: values[rows] for name, values in loaded.items()}
