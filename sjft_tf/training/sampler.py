"""The paired input of joint fine-tuning (Ge & Yu 2017, section 3.4), as tf.data.

Each pair: a target training image drawn with probability proportional to its level,
and one source image drawn uniformly from that target's current pool (the paper's 1:1;
`sources_per_target` = k draws k source images from the pool: a group of 1 + k). A
batch of `batch_size` images holds batch_size / (1 + k) groups, interleaved (target,
source, ..., target, ...), so batch norm sees the mixed batch and any split across
replicas by whole groups holds the same mix of domains. Labels: {"target": target label or IGNORE_LABEL, "source":
source-head label or IGNORE_LABEL} (see losses.py).

Rounds change the levels and pools while `model.fit` runs: they live in variables that
the input pipeline reads, so `set_selection` takes effect without a new dataset (after
the batches already prefetched). The source images of every pool a run can reach (each
target's first k0 * max_level neighbours) are held in memory still encoded, so a round
never reads the source dataset again.

The source head's classes are those the selection decided for the run (manifest.py):
the source classes with enough images among every reachable neighbour.
"""

import dataclasses

import numpy as np
import tensorflow as tf

from sjft_tf import bounds, errors
from sjft_tf.data import pipeline
from sjft_tf.data import spec as spec_lib
from sjft_tf.selection import manifest
from sjft_tf.training.losses import IGNORE_LABEL
from sjft_tf.training.model import SOURCE_HEAD, TARGET_HEAD

_MAX_INDEX = np.iinfo(np.int64).max


@dataclasses.dataclass
class PairConfig:
  """How pairs are drawn and augmented.

  Attributes:
    batch_size: images per batch, both domains together (a multiple of 1 +
      sources_per_target; paper: 20).
    resize_size: images are resized to a square of this side first (paper: 256)...
    crop_size: ...then randomly cropped to this side and flipped (paper: 224; None: the
      model's input size, which a TrainConfig sets).
    min_crop_area: 0: that crop is a fixed crop_size window (the paper's); > 0: a
      random window of this to all of the square's area (aspect 3/4-4/3) resized to
      crop_size, the scale augmentation of training from scratch (Inception: 0.08).
    crop_padding: pixels of reflection around the resized square before the random
      crop (CIFAR's pad-and-crop: 4, with crop_size = resize_size); 0: none.
    sources_per_target: source images drawn from each target's pool per target image
      (paper: 1); more shows the source more often than the target.
    seed: the pairs and augmentations of a run are a function of (seed, pair index).
    max_encoded_gib: refuse to hold more than this many GiB of encoded images.
  """
  batch_size: int = dataclasses.field(default=32, metadata={"flag": {"lower_bound": 2}})
  resize_size: int = bounds.field(256, lower=1)
  crop_size: int | None = bounds.field(None, lower=1)
  min_crop_area: float = dataclasses.field(default=0.0, metadata={
      "flag": {"lower_bound": 0.0, "upper_bound": 1.0}})
  crop_padding: int = bounds.field(0, lower=0)
  sources_per_target: int = dataclasses.field(default=1, metadata={"flag": {"lower_bound": 1}})
  seed: int = bounds.field(0, lower=0)
  max_encoded_gib: float = bounds.field(8.0, lower=0.0)

  def __post_init__(self):
    bounds.check(self)

  @property
  def group_size(self) -> int:
    """Images a target image brings into a batch: itself and its source images."""
    return 1 + self.sources_per_target

  def target_images_per_batch(self, batch_size: int | None = None) -> int:
    """Target images in a joint batch of batch_size (default this config's)."""
    return (batch_size or self.batch_size) // self.group_size


def _check_no_strategy() -> None:
  if tf.distribute.has_strategy():
    raise RuntimeError("build the PairSampler outside strategy.scope(): its variables "
                       "belong to the input pipeline, not to the replicas")


class PairSampler:
  """The paired input of a run of rounds that starts from one selection round.

  Args:
    first_round: a selection round folder (round_000 from sjft-select).
    config: PairConfig.
  Attributes:
    target_class_names: target-head class names (the target dataset's labels).
    source_class_names: source-head class names, head label = index.
    target_spec_dir, target_split: where the target training images are.
    round_index, levels, pool_sizes, selected_images: the round the pipeline samples
      from now, its levels int [targets], pool sizes int [targets] and the number of
      source images in its pools.
  """

  def __init__(self, first_round, config: PairConfig = PairConfig()):
    _check_no_strategy()
    if config.batch_size % config.group_size or not config.crop_size:
      raise errors.InputError(f"batch_size {config.batch_size} must be a multiple of "
                              f"{config.group_size} (1 target and {config.sources_per_target} "
                              f"source images a group) and crop_size ({config.crop_size}) set")
    selection = manifest.load(first_round)
    self.config = config
    self._target_ids = selection.target_ids
    self._source_ids = selection.source_ids
    target, source = selection.provenance.target, selection.provenance.source
    self.target_class_names = spec_lib.load_spec(target.spec_dir).class_names
    self.target_spec_dir, self.target_split = target.spec_dir, target.split
    self.first_round_folder = first_round

    self.max_level = selection.params.max_level
    candidates = manifest.reachable_sources(selection)
    if not selection.head_classes:
      raise errors.InputError(f"{first_round}: no source class has min_images_per_class images "
                              f"in reach: nothing to train the source head on")
    self.source_class_names = list(selection.head_classes)
    head_of = manifest.head_label_map(selection, IGNORE_LABEL)
    candidates = candidates[head_of[selection.source_labels[candidates]] != IGNORE_LABEL]
    self._position = np.full(len(selection.source_ids), -1, np.int64)
    self._position[candidates] = np.arange(len(candidates))

    budget = config.max_encoded_gib * 2**30
    try:
      targets = pipeline.load_encoded(target.spec_dir, [target.split],
                                      ids=selection.target_ids, max_bytes=budget)
      sources = pipeline.load_encoded(
          source.spec_dir, source.splits, ids=selection.source_ids[candidates],
          max_bytes=budget - sum(len(b) for b in targets["encoded"]))
    except MemoryError as error:
      raise errors.InputError(
          f"the target and the {len(candidates)} reachable source images need more than "
          f"max_encoded_gib={config.max_encoded_gib} in memory ({error}): lower k0 or "
          f"max_level, or ingest the source at a smaller image size") from error
    self.num_reachable_sources = len(candidates)
    self._held_source_ids = selection.source_ids[candidates]
    self._tables = {
        domain: {key: tf.constant(images[key]) for key in
                 ("encoded", "format", "height", "width")}
        for domain, images in (("target", targets), ("source", sources))}
    self._tables["target"]["label"] = tf.constant(targets["label"])
    self._tables["source"]["label"] = tf.constant(
        head_of[selection.source_labels[candidates]])

    with tf.device("/cpu:0"):
      def variable(value, dtype):
        return tf.Variable(np.asarray(value), dtype=dtype, trainable=False,
                           shape=tf.TensorShape(None))
      self._target_cdf = variable([1.0], tf.float64)
      self._pool_values = variable([0], tf.int64)
      self._pool_starts = variable([0], tf.int64)
      self._pool_sizes = variable([1], tf.int64)
      self._start_pair = tf.Variable(0, dtype=tf.int64, trainable=False)
    self.set_selection(selection)

  def set_selection(self, selection: manifest.Selection) -> None:
    """Samples from this round's levels and pools from now on."""
    if not np.array_equal(selection.target_ids, self._target_ids) or not np.array_equal(
        selection.source_ids, self._source_ids):
      raise errors.InputError(f"round {selection.round_index} has other target or source images "
                              f"than the round this sampler was built from")
    pools = [self._position[pool] for pool in selection.pools()]
    if any((pool < 0).any() for pool in pools):
      raise errors.InputError(f"round {selection.round_index} reaches beyond the first "
                              f"{selection.params.k0} x max_level={self.max_level} "
                              f"neighbours this sampler holds")
    fallback = self._position[selection.selected]
    fallback = fallback[fallback >= 0]
    if not len(fallback):
      raise errors.InputError(f"round {selection.round_index} selects no source image")
    # A target whose pool is empty (all its neighbours in dropped classes) pairs with
    # any selected source image.
    sizes = np.array([len(p) for p in pools], np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    empty = sizes == 0
    starts[empty], sizes[empty] = sizes.sum(), len(fallback)
    levels = selection.levels.astype(np.float64)
    self._pool_values.assign(np.concatenate(pools + [fallback]).astype(np.int64))
    self._pool_starts.assign(starts)
    self._pool_sizes.assign(sizes)
    self._target_cdf.assign(np.cumsum(levels) / levels.sum())
    self.round_index = selection.round_index
    self.levels = selection.levels
    self.pool_sizes = np.array([len(p) for p in pools], np.int64)
    self.selected_images = len(fallback)

  def start_at(self, pair_index: int) -> None:
    """The next group drawn is group `pair_index` of the run (resuming at a step)."""
    self._start_pair.assign(pair_index)

  def _image(self, domain: str, row: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    table = self._tables[domain]
    image = pipeline.decode_resized(
        tf.gather(table["encoded"], row), tf.gather(table["format"], row),
        tf.gather(table["height"], row), tf.gather(table["width"], row),
        self.config.resize_size)
    return pipeline.random_crop_and_flip(image, self.config.crop_size, seed,
                                         self.config.min_crop_area,
                                         self.config.crop_padding)

  def _draw(self, pair_index: tf.Tensor):
    """(target row, held source rows [k], seeds [1 + k, 2]) of group `pair_index`.

    With k = 1 the draws are those of earlier versions (a resumed run continues them).
    """
    k = self.config.sources_per_target
    seeds = tf.random.experimental.stateless_split(
        tf.stack([tf.constant(self.config.seed, tf.int64), pair_index]), 2 + 2 * k)
    u = tf.random.stateless_uniform([], seeds[0], dtype=tf.float64)
    last = tf.size(self._target_cdf, out_type=tf.int64) - 1
    target = tf.minimum(
        tf.searchsorted(self._target_cdf, [u], side="right", out_type=tf.int64)[0], last)
    size = tf.gather(self._pool_sizes, target)
    offset_seeds = tf.concat([seeds[1:2], seeds[2 + k + 1:]], axis=0)  # [k, 2]
    offsets = tf.minimum(tf.cast(tf.map_fn(
        lambda s: tf.random.stateless_uniform([], s, dtype=tf.float64), offset_seeds,
        fn_output_signature=tf.float64) * tf.cast(size, tf.float64), tf.int64), size - 1)
    sources = tf.gather(self._pool_values, tf.gather(self._pool_starts, target) + offsets)
    return target, sources, seeds[2:2 + k + 1]

  def pair_ids(self, first_pair: int, num_pairs: int) -> tuple[np.ndarray, np.ndarray]:
    """The (target id [n], source ids [n, k]; [n] when k = 1) of groups first_pair ...
    first_pair + num_pairs - 1 under the current round (what `dataset` decodes; for
    inspection and tests)."""
    rows = tf.data.Dataset.range(first_pair, first_pair + num_pairs).map(
        lambda index: self._draw(index)[:2]).batch(max(num_pairs, 1))
    if not num_pairs:
      return np.zeros(0, str), np.zeros(0, str)
    targets, sources = next(iter(rows))
    sources = self._held_source_ids[np.asarray(sources)]
    return (self._target_ids[np.asarray(targets)],
            sources[:, 0] if self.config.sources_per_target == 1 else sources)

  def _pair(self, pair_index: tf.Tensor):
    target, sources, seeds = self._draw(pair_index)
    k = self.config.sources_per_target
    images = tf.stack([self._image("target", target, seeds[0])] + [
        self._image("source", sources[i], seeds[1 + i]) for i in range(k)])
    ignore = tf.constant(IGNORE_LABEL, tf.int64)
    labels = {TARGET_HEAD: tf.stack([tf.gather(self._tables["target"]["label"], target)]
                                    + [ignore] * k),
              SOURCE_HEAD: tf.concat([[ignore], tf.gather(self._tables["source"]["label"],
                                                          sources)], axis=0)}
    return images, labels

  def dataset(self, batch_size: int | None = None, shard_index: int = 0,
              num_shards: int = 1) -> tf.data.Dataset:
    """The endless paired input.

    Args:
      batch_size: images per batch (default config.batch_size; whole groups).
      shard_index, num_shards: this input pipeline takes pairs shard_index,
        shard_index + num_shards, ... of the run's pair stream (one pipeline per
        worker under multi-worker training).
    Returns:
      Dataset of (images float32 [batch, crop, crop, 3] in [0, 255], {"target": int64
      [batch], "source": int64 [batch]}), domains interleaved.
    """
    batch_size = batch_size or self.config.batch_size
    group = self.config.group_size
    if batch_size % group:
      raise errors.InputError(f"batch_size {batch_size} must be a multiple of {group} (groups "
                              f"of 1 target and {group - 1} source images)")
    crop = self.config.crop_size

    def pair_at(position):
      return self._pair(self._start_pair + position * num_shards + shard_index)

    def interleave(images, labels):
      return (tf.reshape(images, [batch_size, crop, crop, 3]),
              {head: tf.reshape(value, [batch_size]) for head, value in labels.items()})

    options = tf.data.Options()
    options.deterministic = True
    return (tf.data.Dataset.range(_MAX_INDEX)
            .map(pair_at, num_parallel_calls=tf.data.AUTOTUNE)
            .batch(batch_size // group, drop_remainder=True)
            .map(interleave)
            .prefetch(tf.data.AUTOTUNE)
            .with_options(options))
