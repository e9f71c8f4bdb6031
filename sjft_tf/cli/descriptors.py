r"""sjft-descriptors: filter-bank histogram descriptors of a target and a source dataset.

Fits equal-mass bin edges on the target's train split, then writes descriptor shards
for the requested splits of both datasets (resumable, per shard):
  sjft-descriptors --target_dir=data/flowers102 --source_dir=data/tiny_imagenet200 \
      --output_dir=runs/flowers102/descriptors --bank=learned --application=MobileNet \
      --application_kwargs='{"alpha": 0.25}' --layers=conv1,conv_pw_1 --weights=imagenet
  sjft-descriptors ... --bank=gabor            # the paper's linear bank, 48 filters
  sjft-descriptors ... --runner=DirectRunner \
      --beam_options=--direct_num_workers=2,--direct_running_mode=multi_processing
The last runs both passes as Apache Beam pipelines (same files; README: "Sources
beyond one machine").
"""

import json

from absl import flags

from sjft_tf.descriptors import extract
from sjft_tf.descriptors.gabor import GaborParams
from sjft_tf.cli import beam_flags, runner

FLAG_VALUES = flags.FlagValues()
_PIPELINE_ARGS = beam_flags.define(FLAG_VALUES)
_TARGET_DIR = flags.DEFINE_string("target_dir", None, "Ingested target dataset (its spec folder).", required=True, flag_values=FLAG_VALUES)
_SOURCE_DIR = flags.DEFINE_string("source_dir", None, "Ingested source dataset; omit to describe the target only.", flag_values=FLAG_VALUES)
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Descriptor folder (metadata, edges, shards).", required=True, flag_values=FLAG_VALUES)
_TARGET_SPLITS = flags.DEFINE_list("target_splits", ["train"], "Target splits to describe.", flag_values=FLAG_VALUES)
_SOURCE_SPLITS = flags.DEFINE_list("source_splits", ["train"], "Source splits to describe.", flag_values=FLAG_VALUES)
_FIT_SPLIT = flags.DEFINE_string("fit_split", "train", "Target split the bin edges are fitted on.", flag_values=FLAG_VALUES)

_BANK = flags.DEFINE_enum("bank", "learned", ["learned", "gabor"], "Filter bank: a pretrained network's early layers, or Gabor filters.", flag_values=FLAG_VALUES)
_APPLICATION = flags.DEFINE_string("application", "MobileNet", "keras.applications network of the learned bank.", flag_values=FLAG_VALUES)
_APPLICATION_KWARGS = flags.DEFINE_string("application_kwargs", '{"alpha": 0.25}', "JSON constructor arguments of the network.", flag_values=FLAG_VALUES)
_LAYERS = flags.DEFINE_list("layers", ["conv1", "conv_pw_1"], "Layers whose pre-activation responses form the learned bank.", flag_values=FLAG_VALUES)
_WEIGHTS = flags.DEFINE_string("weights", "imagenet", "'imagenet' (downloads), a weights file, or 'none' (random).", flag_values=FLAG_VALUES)
_GABOR_SCALES = flags.DEFINE_integer("gabor_scales", GaborParams.num_scales, "Gabor pyramid levels.", flag_values=FLAG_VALUES)
_GABOR_ORIENTATIONS = flags.DEFINE_integer("gabor_orientations", GaborParams.num_orientations, "Gabor orientations.", flag_values=FLAG_VALUES)
_GABOR_KERNEL_SIZE = flags.DEFINE_integer("gabor_kernel_size", GaborParams.kernel_size, "Gabor kernel side, pixels.", flag_values=FLAG_VALUES)
_GABOR_WAVELENGTH = flags.DEFINE_float("gabor_wavelength", GaborParams.wavelength, "Gabor wavelength at every level, pixels.", flag_values=FLAG_VALUES)
_GABOR_SIGMA = flags.DEFINE_float("gabor_sigma_per_wavelength", GaborParams.sigma_per_wavelength, "Gabor sigma / wavelength.", flag_values=FLAG_VALUES)
_GABOR_GAMMA = flags.DEFINE_float("gabor_gamma", GaborParams.gamma, "Gabor aspect ratio.", flag_values=FLAG_VALUES)

_NUM_BINS = flags.DEFINE_integer("num_bins", 0, "Bins per channel (0: 100 learned, 32 Gabor).", lower_bound=0, flag_values=FLAG_VALUES)
_RESIZE_SIZE = flags.DEFINE_integer("resize_size", 256, "Images are resized to this square first.", flag_values=FLAG_VALUES)
_CROP_SIZE = flags.DEFINE_integer("crop_size", 224, "Then centre-cropped to this square.", flag_values=FLAG_VALUES)
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 64, "Images per forward pass.", flag_values=FLAG_VALUES)
_STORAGE = flags.DEFINE_enum("storage", "float16", ["float16", "uint8"], "Descriptor storage.", flag_values=FLAG_VALUES)
_FINE_BINS = flags.DEFINE_integer("fine_bins", extract.histogram.DEFAULT_FINE_BINS, "Fitting grid cells per channel.", flag_values=FLAG_VALUES)
_LOOKUP_CELLS = flags.DEFINE_integer("lookup_cells", 0, "Binning lookup cells per channel (speed only; 0: automatic).", flag_values=FLAG_VALUES)
_PROGRESS = flags.DEFINE_bool("progress", True, "Show progress bars.", flag_values=FLAG_VALUES)


def config_from_flags() -> extract.ExtractionConfig:
  bank = extract.BankConfig(
      kind=_BANK.value, application=_APPLICATION.value,
      application_kwargs=json.loads(_APPLICATION_KWARGS.value), layer_names=_LAYERS.value,
      weights=None if _WEIGHTS.value == "none" else _WEIGHTS.value,
      gabor=GaborParams(_GABOR_SCALES.value, _GABOR_ORIENTATIONS.value,
                        _GABOR_KERNEL_SIZE.value, _GABOR_WAVELENGTH.value,
                        _GABOR_SIGMA.value, _GABOR_GAMMA.value))
  return extract.ExtractionConfig(
      output_dir=_OUTPUT_DIR.value, bank=bank, num_bins=_NUM_BINS.value,
      resize_size=_RESIZE_SIZE.value, crop_size=_CROP_SIZE.value,
      batch_size=_BATCH_SIZE.value, fine_bins=_FINE_BINS.value,
      lookup_cells=_LOOKUP_CELLS.value, storage=_STORAGE.value,
      show_progress=_PROGRESS.value)


def main(argv):
  del argv
  config = config_from_flags()
  workers = None
  if _PIPELINE_ARGS():
    from sjft_tf.beam import descriptors as beam_descriptors  # pylint: disable=g-import-not-at-top
    workers = beam_descriptors.BeamPasses(config, _PIPELINE_ARGS())
  metadata = extract.extract(config, _TARGET_DIR.value, _SOURCE_DIR.value,
                             _TARGET_SPLITS.value, _SOURCE_SPLITS.value, _FIT_SPLIT.value,
                             workers)
  groups = ", ".join(f"{name} {channels}" for name, channels in metadata["channel_groups"])
  print(f"descriptors in {config.output_dir}: {metadata['dimension']} values each "
        f"({metadata['num_channels']} channels [{groups}] x {config.bins} bins, "
        f"{config.storage})")
  for entry in metadata["datasets"]:
    print(f"  {entry['role']}: {entry['dataset']}/{entry['split']}, "
          f"{entry['num_examples']} images in {len(entry['shards'])} shards")
  for item in workers.failures if workers else []:
    print(f"  left out (rerun to retry): {item['shard']}: {item['error']}")


def run():
  runner.run(main, FLAG_VALUES)


if __name__ == "__main__":
  run()
