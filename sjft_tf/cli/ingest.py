r"""sjft-ingest: an image collection -> sharded TFRecords + dataset_spec.json.

Exactly one input:
  sjft-ingest --input_root=ROOT --output_dir=OUT          # ROOT/<split>/<class>/* or ROOT/<class>/*
  sjft-ingest --input_csv=list.csv --output_dir=OUT       # columns path,label[,split]
  sjft-ingest --tfds_name=oxford_flowers102 --tfds_splits=train,val=validation,test \
              --tfds_data_dir=~/tensorflow_datasets --output_dir=OUT
Rerunning the same command resumes an interrupted run.
"""

import json
import os

from absl import app, flags, logging

from sjft_tf.data import ingest, sources
from sjft_tf.cli import config_flags, runner

FLAG_VALUES = flags.FlagValues()
_INPUT_ROOT = flags.DEFINE_string("input_root", None, "Folder of ROOT/<split>/<class>/* or ROOT/<class>/* images.", flag_values=FLAG_VALUES)
_INPUT_CSV = flags.DEFINE_string("input_csv", None, "CSV manifest with a header path,label[,split].", flag_values=FLAG_VALUES)
_TFDS_NAME = flags.DEFINE_string("tfds_name", None, "TFDS dataset name[:version] to ingest.", flag_values=FLAG_VALUES)

_LAYOUT = flags.DEFINE_enum("layout", "auto", ["auto", "split_class", "class"], "Folder layout of --input_root.", flag_values=FLAG_VALUES)
_SPLIT_FRACTIONS = flags.DEFINE_string("split_fractions", "", "Divide unsplit inputs per class, e.g. train=0.8,val=0.2.", flag_values=FLAG_VALUES)
_SPLIT_COUNTS = flags.DEFINE_string("split_counts", "", "Or divide them by images per class, e.g. train=30,test=rest (Caltech-256's protocol).", flag_values=FLAG_VALUES)
_SPLITS = flags.DEFINE_list("splits", [], "With --input_root: ingest only these split folders (default: all).", flag_values=FLAG_VALUES)
_CLASSES = flags.DEFINE_list("classes", [], "Ingest only these classes (default: all).", flag_values=FLAG_VALUES)

_TFDS_SPLITS = flags.DEFINE_string("tfds_splits", "train", "Output splits, each optionally =TFDS split: train,val=validation.", flag_values=FLAG_VALUES)
_TFDS_DATA_DIR = flags.DEFINE_string("tfds_data_dir", None, "TFDS data_dir holding the prepared dataset.", flag_values=FLAG_VALUES)
_TFDS_IMAGE_KEY = flags.DEFINE_string("tfds_image_key", "image", "TFDS feature holding the image.", flag_values=FLAG_VALUES)
_TFDS_LABEL_KEY = flags.DEFINE_string("tfds_label_key", "label", "TFDS ClassLabel feature.", flag_values=FLAG_VALUES)
_TFDS_DOWNLOAD = flags.DEFINE_bool("tfds_download", False, "Download and prepare the TFDS dataset first (needs the internet).", flag_values=FLAG_VALUES)

# The fields of IngestConfig are flags of their names (--display_names, --progress).
_BUILD = config_flags.define(FLAG_VALUES, ingest.IngestConfig, required=("output_dir",),
                             names={"display_names_file": "display_names",
                                    "show_progress": "progress"},
                             defaults={"max_side": 0, "dataset_name": ""})
_METADATA_JSON = flags.DEFINE_string("metadata_json", None, "JSON file whose keys are added to the spec's metadata.", flag_values=FLAG_VALUES)


def _listed_source() -> sources.ListedSource:
  given = [f for f in (_INPUT_ROOT, _INPUT_CSV, _TFDS_NAME) if f.value]
  if len(given) != 1:
    raise app.UsageError("give exactly one of --input_root, --input_csv, --tfds_name")
  if _INPUT_ROOT.value:
    return sources.list_folder(_INPUT_ROOT.value, _LAYOUT.value, _SPLIT_FRACTIONS.value,
                               _CLASSES.value or None, _SPLIT_COUNTS.value,
                               _SPLITS.value or None)
  if _INPUT_CSV.value:
    return sources.list_csv(_INPUT_CSV.value, _SPLIT_FRACTIONS.value, _CLASSES.value or None,
                            _SPLIT_COUNTS.value)
  return sources.list_tfds(_TFDS_NAME.value, _TFDS_SPLITS.value, _TFDS_DATA_DIR.value,
                           _TFDS_IMAGE_KEY.value, _TFDS_LABEL_KEY.value, _TFDS_DOWNLOAD.value)


def summary(spec, skipped: list[dict]) -> str:
  """Human-readable lines: classes, per-split counts, skipped inputs."""
  lines = [f"dataset {spec.name}: {spec.num_classes} classes, spec {spec.directory}"]
  for split, split_spec in sorted(spec.splits.items()):
    counts = split_spec.class_counts
    lines.append(f"  {split}: {split_spec.num_examples} examples, {len(split_spec.shards)} "
                 f"shards, {min(counts)}-{max(counts)} per class")
  if skipped:
    lines.append(f"  skipped {len(skipped)} inputs (see {ingest.REPORT_FILENAME}):")
    lines.extend(f"    {item['path']}: {item['reason']}" for item in skipped[:20])
  return "\n".join(lines)


def main(argv):
  del argv
  listed = _listed_source()
  if _METADATA_JSON.value:
    with open(_METADATA_JSON.value) as f:
      listed.metadata.update(json.load(f))
  config = _BUILD()
  if not config.dataset_name:
    config.dataset_name = os.path.basename(os.path.normpath(config.output_dir))
  spec = ingest.ingest(listed, config)
  print(summary(spec, ingest.skipped_inputs(config.output_dir)))
  logging.info("wrote %s", spec.directory)


def run():
  runner.run(main, FLAG_VALUES)


if __name__ == "__main__":
  run()
