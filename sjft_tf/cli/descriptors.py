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

import dataclasses

from absl import flags

from sjft_tf.descriptors import extract
from sjft_tf.cli import beam_flags, config_flags, runner

FLAG_VALUES = flags.FlagValues()
_RUNNER_OPTIONS = beam_flags.define(FLAG_VALUES)
_TARGET_DIR = flags.DEFINE_string("target_dir", None, "Ingested target dataset (its spec folder).", required=True, flag_values=FLAG_VALUES)
_SOURCE_DIR = flags.DEFINE_string("source_dir", None, "Ingested source dataset; omit to describe the target only.", flag_values=FLAG_VALUES)
_TARGET_SPLITS = flags.DEFINE_list("target_splits", ["train"], "Target splits to describe.", flag_values=FLAG_VALUES)
_SOURCE_SPLITS = flags.DEFINE_list("source_splits", ["train"], "Source splits to describe.", flag_values=FLAG_VALUES)
_FIT_SPLIT = flags.DEFINE_string("fit_split", "train", "Target split the bin edges are fitted on.", flag_values=FLAG_VALUES)

# The fields of ExtractionConfig, its BankConfig and GaborParams are flags of their
# names (--bank, --layers, --gabor_* and --progress where the field is named otherwise).
_BUILD = config_flags.define(
    FLAG_VALUES, extract.ExtractionConfig, prefixes={"bank.gabor": "gabor_"},
    names={"bank.kind": "bank", "bank.layer_names": "layers",
           "bank.gabor.num_scales": "gabor_scales",
           "bank.gabor.num_orientations": "gabor_orientations", "show_progress": "progress"},
    required=("output_dir",))


def config_from_flags() -> extract.ExtractionConfig:
  config = _BUILD()
  if config.bank.weights == "none":  # random weights (tests)
    config.bank = dataclasses.replace(config.bank, weights=None)
  return config


def main(argv):
  del argv
  config = config_from_flags()
  with _RUNNER_OPTIONS() as pipeline_args:
    workers = None
    if pipeline_args:
      from sjft_tf.beam import descriptors as beam_descriptors  # pylint: disable=g-import-not-at-top
      workers = beam_descriptors.BeamPasses(config, pipeline_args)
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
