"""Streams datasets through a filter bank and writes histogram descriptors.

1. Fit: two passes over the TARGET train split (ranges, then a fine grid) give the
   equal-mass bin edges (`histogram.equal_mass_edges`); saved as edges.npz.
2. Extract: every shard of each requested split goes through bank + histograms in
   large batches and is written as one descriptor shard (`store`).
Both steps resume: edges and shards already written are reused, after checking that
they were made with the same bank and settings.

Both passes work shard by shard (`EdgeFitter`, `extract_shard`): per-shard ranges
combine by min/max and per-shard counts by sum, exactly and in any order, so the Beam
pipelines of `sjft_tf.beam` that run the same functions on workers give the same
edges and the same descriptor files.
"""

import dataclasses
import logging
import os
import shutil

import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from sjft_tf import bounds, errors, files, precision
from sjft_tf.data import pipeline
from sjft_tf.data import spec as spec_lib
from sjft_tf.descriptors import histogram, learned, store
from sjft_tf.descriptors.gabor import GaborBank, GaborParams

DEFAULT_NUM_BINS = {"learned": 100, "gabor": 32}


@dataclasses.dataclass
class BankConfig:
  """Which filter bank.

  Attributes:
    kind: "learned" (a pretrained network's early layers) or "gabor".
    application: keras.applications class of the learned bank.
    application_kwargs: its constructor arguments (e.g. {"alpha": 0.25}).
    layer_names: the layers whose pre-activation responses are used.
    weights: "imagenet", a weights file, or None (random: for tests only; "none" on the
      command line).
    gabor: parameters of the Gabor bank.
  """
  kind: str = dataclasses.field(default="learned",
                                metadata={"flag": {"enum_values": ["learned", "gabor"]}})
  application: str = "MobileNet"
  application_kwargs: dict = dataclasses.field(default_factory=lambda: {"alpha": 0.25})
  layer_names: list[str] = dataclasses.field(default_factory=lambda: ["conv1", "conv_pw_1"])
  weights: str | None = "imagenet"
  gabor: GaborParams = dataclasses.field(default_factory=GaborParams)

  def __post_init__(self):
    bounds.check(self)

  def identity(self) -> dict:
    """What decides the responses (the weights' origin, not a file's location)."""
    if self.kind == "gabor":
      return {"kind": "gabor", **dataclasses.asdict(self.gabor)}
    return {"kind": "learned", "application": self.application,
            "application_kwargs": self.application_kwargs,
            "layer_names": list(self.layer_names),
            "weights": None if self.weights is None else os.path.basename(str(self.weights))}


@dataclasses.dataclass
class ExtractionConfig:
  """How descriptors are computed and stored.

  Attributes:
    output_dir: the descriptor folder.
    bank: the filter bank.
    num_bins: B, bins per channel (0: 100 for learned banks, 32 for Gabor).
    resize_size, crop_size: images are resized to a square, then centre-cropped
      (the paper: 256 and 224).
    batch_size: images per forward pass.
    fine_bins: cells per channel of the fitting grid (resolution of the edges).
    lookup_cells: cells per channel of the binning lookup grid (speed only; 0: the
      most that fit 64 MiB of tables).
    storage: "float16" or "uint8" (see store.encode).
    dtype_policy: the bank's precision ("float32", "mixed_bfloat16", "mixed_float16";
      precision.py); the histogram counting stays float32.
    show_progress: draw progress bars.
  """
  output_dir: str
  bank: BankConfig = dataclasses.field(default_factory=BankConfig)
  num_bins: int = dataclasses.field(default=0, metadata={"flag": {"lower_bound": 0}})
  resize_size: int = bounds.field(256, lower=1)
  crop_size: int = bounds.field(224, lower=1)
  batch_size: int = bounds.field(64, lower=1)
  fine_bins: int = bounds.field(histogram.DEFAULT_FINE_BINS, lower=2)
  lookup_cells: int = bounds.field(0, lower=0)
  storage: str = dataclasses.field(default="float16",
                                   metadata={"flag": {"enum_values": ["float16", "uint8"]}})
  dtype_policy: str = dataclasses.field(default="float32", metadata={
      "flag": {"enum_values": list(precision.POLICIES)}})
  show_progress: bool = True

  def __post_init__(self):
    bounds.check(self)

  @property
  def bins(self) -> int:
    return self.num_bins or DEFAULT_NUM_BINS[self.bank.kind]


def make_bank(config: BankConfig, dtype_policy: str = "float32") -> keras.layers.Layer:
  """The Keras layer of a bank config, computing in `dtype_policy` (precision.py)."""
  with precision.dtype_policy(dtype_policy):
    if config.kind == "gabor":
      return GaborBank(**dataclasses.asdict(config.gabor))
    if config.kind == "learned":
      return learned.application_bank(config.application, config.layer_names,
                                      config.weights, **config.application_kwargs)
  raise errors.InputError(f"unknown bank kind {config.kind!r} (learned, gabor)")


def _reader(config: ExtractionConfig) -> pipeline.ReaderConfig:
  return pipeline.ReaderConfig(batch_size=config.batch_size, resize_size=config.resize_size,
                               crop_size=config.crop_size)


def _images(spec, split, config, shard_indices=None):
  """The batches of a split's shards (evaluation reading); a damaged shard fails with
  a ValueError naming it."""
  dataset = pipeline.make_dataset(spec, split, _reader(config), training=False,
                                  shard_indices=shard_indices)
  with pipeline.naming_damaged_shards(spec, split, shard_indices):
    yield from dataset


def channel_weights(bank) -> np.ndarray:
  """float32 [C]: 1 / (channels of its layer) for every channel, in output order."""
  return np.concatenate([np.full(channels, 1.0 / channels, np.float32)
                         for _, channels in bank.channel_groups()])


class EdgeFitter:
  """The two fitting passes of one shard, compiled once per bank (per Beam worker)."""

  def __init__(self, bank, config: ExtractionConfig):
    self.bank, self.config = bank, config
    self._ranges = tf.function(lambda x: histogram.batch_ranges(self._maps(x)))
    self._counts_of, self._bounds = None, None

  def _maps(self, images):
    """The bank's response maps as float32 (a mixed-precision bank computes in 16 bits;
    ranges and counts are float32)."""
    return [tf.cast(m, tf.float32) for m in self.bank(images)]

  def shard_ranges(self, spec, split: str, index: int, progress=None):
    """(lower, upper) float32 [C]: each channel's range over shard `index`; None for an
    empty shard."""
    lower = upper = None
    for batch in _images(spec, split, self.config, shard_indices=[index]):
      low, high = (t.numpy() for t in self._ranges(batch["image"]))
      lower = low if lower is None else np.minimum(lower, low)
      upper = high if upper is None else np.maximum(upper, high)
      if progress is not None:
        progress.update(int(batch["image"].shape[0]))
    return None if lower is None else (lower, upper)

  def shard_counts(self, spec, split: str, index: int, lower, upper,
                   progress=None) -> np.ndarray:
    """int64 [C, fine_bins]: the fine-grid counts of shard `index` in [lower, upper]."""
    if self._bounds is None or not all(
        np.array_equal(a, b) for a, b in zip(self._bounds, (lower, upper))):
      zero_floor = histogram.zero_floors(lower, upper)
      self._counts_of = tf.function(lambda x: histogram.batch_fine_counts(
          self._maps(x), lower, upper, self.config.fine_bins, zero_floor))
      self._bounds = (lower, upper)
    counts = np.zeros((lower.shape[0], self.config.fine_bins), np.int64)
    for batch in _images(spec, split, self.config, shard_indices=[index]):
      counts += self._counts_of(batch["image"]).numpy()
      if progress is not None:
        progress.update(int(batch["image"].shape[0]))
    return counts


def combine_ranges(ranges) -> tuple[np.ndarray, np.ndarray]:
  """The per-shard (lower, upper) pairs (None: empty shard) combined by min and max."""
  ranges = [r for r in ranges if r is not None]
  if not ranges:
    raise errors.InputError("no image to fit the bin edges on")
  return (np.minimum.reduce([low for low, _ in ranges]),
          np.maximum.reduce([high for _, high in ranges]))


def edges_from_counts(counts: np.ndarray, lower, upper, bank,
                      config: ExtractionConfig) -> store.Edges:
  """The equal-mass edges of summed fine-grid counts."""
  edges = histogram.equal_mass_edges(counts, lower, upper, config.bins)
  return store.Edges(edges, lower.astype(np.float32), upper.astype(np.float32),
                     histogram.zero_floors(lower, upper), channel_weights(bank))


def fit_edges(bank, spec: spec_lib.DatasetSpec, split: str,
              config: ExtractionConfig) -> store.Edges:
  """Equal-mass edges from two streamed passes over `spec`'s `split` (the target)."""
  fitter = EdgeFitter(bank, config)
  shards = range(len(spec.split(split).shards))
  total = spec.split(split).num_examples
  with tqdm(total=total, desc="fit edges 1/2 (ranges)", unit="img",
            disable=not config.show_progress) as progress:
    lower, upper = combine_ranges([fitter.shard_ranges(spec, split, i, progress)
                                   for i in shards])
  counts = np.zeros((lower.shape[0], config.fine_bins), np.int64)
  with tqdm(total=total, desc="fit edges 2/2 (fine grid)", unit="img",
            disable=not config.show_progress) as progress:
    for i in shards:
      counts += fitter.shard_counts(spec, split, i, lower, upper, progress)
  return edges_from_counts(counts, lower, upper, bank, config)


def descriptor_model(bank, edges: store.Edges, config: ExtractionConfig) -> keras.Model:
  """images float [batch, crop, crop, 3] in [0, 255] -> descriptors float32 [batch, C*B]."""
  images = keras.Input((config.crop_size, config.crop_size, 3), name="images")
  layer = histogram.HistogramLayer(edges.edges, edges.zero_floor, config.lookup_cells,
                                   name="histograms", dtype="float32")
  return keras.Model(images, layer(bank(images)), name="descriptors")


def compiled_descriptors(model: keras.Model):
  """A compiled images -> descriptors function of a `descriptor_model`.

  The bank and the histograms are compiled apart: on CPUs XLA runs the convolutions
  2-5x slower than TensorFlow's own (oneDNN) kernels, while the histogram's chain of
  element-wise ops and gathers runs 8x faster fused by XLA.
  """
  bank = next(layer for layer in model.layers if hasattr(layer, "channel_groups"))
  histograms = model.get_layer("histograms")
  responses = tf.function(lambda images: bank(images, training=False))
  binned = tf.function(lambda maps: histograms(maps), jit_compile=True)
  compute = lambda images: binned(responses(images))
  compute.dimension = histograms.num_channels * histograms.num_bins
  return compute


def shard_outputs(spec: spec_lib.DatasetSpec, split: str, role: str) -> list[str]:
  """The descriptor shard of each input shard of `split`, relative to the folder."""
  return [f"{role}/{os.path.splitext(os.path.basename(s))[0]}.npz"
          for s in spec.split(split).shards]


def extract_shard(compute, spec: spec_lib.DatasetSpec, split: str, role: str, index: int,
                  config: ExtractionConfig, progress=None) -> str:
  """Writes the descriptors of input shard `index` (atomically) unless a whole one is
  present (a damaged one, e.g. truncated, is made again).

  Args:
    compute: images -> descriptors, from `compiled_descriptors` (compiled once, used
      for every shard: compiling embeds the lookup tables, which takes seconds).
  Returns:
    The descriptor shard's path relative to config.output_dir.
  """
  output = shard_outputs(spec, split, role)[index]
  if files.npz_is_whole(os.path.join(config.output_dir, output)):
    return output
  ids, labels, rows = [], [], []
  for batch in _images(spec, split, config, shard_indices=[index]):
    rows.append(compute(batch["image"]).numpy())
    ids.extend(i.decode() for i in batch["id"].numpy())
    labels.append(batch["label"].numpy())
    if progress is not None:
      progress.update(len(batch["id"]))
  descriptors = (np.concatenate(rows) if rows
                 else np.zeros((0, compute.dimension), np.float32))
  store.save_shard(os.path.join(config.output_dir, output), ids,
                   np.concatenate(labels) if labels else np.zeros(0, np.int32),
                   descriptors, config.storage)
  return output


def extract_split(compute, spec: spec_lib.DatasetSpec, split: str, role: str,
                  config: ExtractionConfig) -> list[str]:
  """Writes one descriptor shard per input shard of `split`; skips complete ones.

  Returns:
    The shards' paths relative to config.output_dir.
  """
  with tqdm(total=spec.split(split).num_examples, unit="img",
            desc=f"descriptors {spec.name}/{split}",
            disable=not config.show_progress) as progress:
    return [extract_shard(compute, spec, split, role, i, config, progress)
            for i in range(len(spec.split(split).shards))]


def _fit_record(config: ExtractionConfig, target: spec_lib.DatasetSpec, split: str) -> dict:
  """The settings the edges and every descriptor depend on, and the fingerprint of the
  images the edges were fitted on."""
  return {"bank": config.bank.identity(), "num_bins": config.bins,
          "fine_bins": config.fine_bins, "resize_size": config.resize_size,
          "crop_size": config.crop_size, "fit_dataset": target.name, "fit_split": split,
          "storage": config.storage, "dtype_policy": config.dtype_policy,
          files.INPUTS_KEY: target.split_fingerprint(split)}


def _check_earlier(metadata_path: str, fit: dict, jobs, inputs: list[str]) -> None:
  """Refuses a descriptor folder made with other settings, or from other images of a
  split to describe (`inputs`: each job's `split_fingerprint`; `files.matches`); its
  files would be reused otherwise."""
  if not os.path.exists(metadata_path):
    return
  try:
    earlier = store.load_metadata(os.path.dirname(metadata_path))
  except ValueError as error:
    if "is damaged" not in str(error):
      raise
    _remove_unvouched(os.path.dirname(metadata_path))
    logging.warning("%s is damaged: the descriptors it recorded are made again (their "
                    "settings cannot be checked without it)", metadata_path)
    return
  if not files.matches(earlier["fit"], fit):
    raise errors.InputError(f"{metadata_path} was made with other settings or fitted on other "
                            f"images ({earlier['fit']}); use another --output_dir or delete it")
  made_from = {(e["role"], e["dataset"], e["split"]): e.get(files.INPUTS_KEY)
               for e in earlier["datasets"]}
  for (role, spec, split), fingerprint in zip(jobs, inputs):
    if made_from.get((role, spec.name, split)) not in (None, fingerprint):
      raise errors.InputError(f"{metadata_path}: its {role} descriptors of {spec.name}/{split} "
                              f"were made from other images (ingested again since); use another "
                              f"--output_dir or delete it")


def _remove_unvouched(output_dir: str) -> None:
  """Removes what a damaged metadata file vouched for: the metadata, the edges, the
  fitting passes and every descriptor shard (made again by the run that finds it)."""
  for name in (store.METADATA_FILENAME, store.EDGES_FILENAME, "beam_failures.json"):
    if os.path.exists(os.path.join(output_dir, name)):
      os.remove(os.path.join(output_dir, name))
  for name in ("target", "source", "fit"):
    shutil.rmtree(os.path.join(output_dir, name), ignore_errors=True)


def _bank_config(bank) -> dict:
  """The bank's Keras config without its build shape (which held the batch size of
  whichever run built it first, so metadata differed between runs) and without its
  layer name (Keras numbers it by how many banks the process built before)."""
  config = keras.saving.serialize_keras_object(bank)
  config.pop("build_config", None)
  config.get("config", {}).pop("name", None)
  return config


def extract(config: ExtractionConfig, target_dir: str, source_dir: str | None = None,
            target_splits=("train",), source_splits=("train",),
            fit_split: str = "train", workers=None) -> dict:
  """Fits edges on the target's `fit_split`, then writes descriptors of both datasets.

  Args:
    workers: None runs both passes in this process; a `sjft_tf.beam.descriptors.
      BeamPasses` runs them as Beam pipelines (same files, see that module).
  Returns:
    The metadata written to `output_dir/descriptor_metadata.json`.
  Raises:
    ValueError: output_dir holds descriptors made with other settings.
  """
  target = spec_lib.load_spec(target_dir)
  fit = _fit_record(config, target, fit_split)
  jobs = [("target", target, s) for s in target_splits]
  if source_dir:
    source = spec_lib.load_spec(source_dir)
    jobs += [("source", source, s) for s in source_splits]
  files.remove_stale_temporaries(config.output_dir)
  metadata_path = os.path.join(config.output_dir, store.METADATA_FILENAME)
  inputs = [spec.split_fingerprint(split) for _, spec, split in jobs]
  _check_earlier(metadata_path, fit, jobs, inputs)
  bank = make_bank(config.bank, config.dtype_policy)
  edges_path = os.path.join(config.output_dir, store.EDGES_FILENAME)
  if files.npz_is_whole(edges_path) and os.path.exists(metadata_path):
    edges = store.load_edges(config.output_dir)
    logging.info("reusing edges from %s", edges_path)
  else:
    edges = (fit_edges(bank, target, fit_split, config) if workers is None
             else workers.fit_edges(bank, target, fit_split))
    store.save_edges(config.output_dir, edges)
  metadata = {
      "fit": fit,
      "bank_config": _bank_config(bank),
      "channel_groups": bank.channel_groups(),
      "num_channels": int(edges.edges.shape[0]),
      "dimension": int(edges.edges.shape[0] * config.bins),
      "datasets": [],
  }
  store.save_metadata(config.output_dir, metadata)  # marks the edges as fitted
  if workers is not None:
    shard_lists = workers.extract(jobs)
  else:
    compute = compiled_descriptors(descriptor_model(bank, edges, config))
    shard_lists = (extract_split(compute, spec, split, role, config)
                   for role, spec, split in jobs)
  for (role, spec, split), shards, fingerprint in zip(jobs, shard_lists, inputs):
    metadata["datasets"].append({
        "role": role, "dataset": spec.name, "spec_dir": spec.directory, "split": split,
        "num_examples": spec.split(split).num_examples, "class_names": spec.class_names,
        "shards": shards, files.INPUTS_KEY: fingerprint})
    store.save_metadata(config.output_dir, metadata)
  return metadata
