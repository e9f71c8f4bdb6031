r"""sjft-export: the trained target classifier as a versioned SavedModel for TF Serving.

  sjft-export --run_dir=runs/demo/train --export_dir=runs/demo/export
  # the winner of a comparison (sjft-reproduce's output folder): the row best on
  # validation and its best seed, once the test split is read; or --row (and --seed)
  sjft-export --study=runs/my_comparison            # -> runs/my_comparison/export
  tensorflow_model_server --rest_api_port=8501 --model_name=sjft \
      --model_base_path=$PWD/runs/demo/export
Writes <export_dir>/<next version>/; signatures serving_default (encoded JPEG/PNG
bytes) and predict_images (float pixels); see README.
"""

import dataclasses
import json
import os

from absl import app, flags

from sjft_tf import errors, outputs
from sjft_tf.experiments import summary
from sjft_tf.export import serving
from sjft_tf.cli import config_flags, runner

FLAG_VALUES = flags.FlagValues()
_STUDY = flags.DEFINE_string("study", "", "An sjft-reproduce output folder: export its row best on validation (results.json; its test split must be read), or --row / --seed. Replaces --run_dir; --export_dir defaults to <study>/export.", flag_values=FLAG_VALUES)
_ROW = flags.DEFINE_string("row", "", "With --study: the row to export (e.g. l2sp) instead of the best on validation.", flag_values=FLAG_VALUES)
_SEED = flags.DEFINE_integer("seed", None, "With --study and --row: the seed to export (default: the row's best on validation).", flag_values=FLAG_VALUES)
# The fields of ExportConfig are flags of their names.
config_from_flags = config_flags.define(FLAG_VALUES, serving.ExportConfig,
                                        defaults={"run_dir": "", "export_dir": ""})


def study_config(config: serving.ExportConfig, study_dir: str, row: str = "",
                 seed: int | None = None) -> tuple[serving.ExportConfig, dict]:
  """(config with the study's chosen run and export folder, summary.chosen_run's
  choice)."""
  path = os.path.join(study_dir, "results.json")
  if not os.path.exists(path):
    raise errors.MissingInputError(f"{path}: no such file; run sjft-reproduce with "
                                   f"--output_dir={study_dir} first")
  with open(path) as f:
    results = json.load(f)
  choice = summary.chosen_run(results, study_dir, row, seed)
  return dataclasses.replace(config, run_dir=choice["run_dir"], export_dir=(
      config.export_dir or os.path.join(study_dir, "export"))), choice


def main(argv):
  del argv
  config = config_from_flags()
  if _STUDY.value:
    if config.run_dir:
      raise app.UsageError("--study and --run_dir: name one")
    config, choice = study_config(config, _STUDY.value, _ROW.value, _SEED.value)
    test = "" if choice["test"] is None else f", test {choice['test'] * 100:.1f}"
    print(f"{choice['row']}, seed {choice['seed']} ({choice['why']}; validation "
          f"{choice['validation'] * 100:.1f}{test}): {config.run_dir}")
  elif _ROW.value or _SEED.value is not None:
    raise app.UsageError("--row and --seed go with --study")
  elif not (config.run_dir and config.export_dir):
    raise app.UsageError("name --run_dir and --export_dir, or --study")
  path = serving.export_run(config)
  trained = outputs.TrainedRun.read(config.run_dir)
  print(f"exported {len(trained.target_class_names)} classes, {trained.resize_size} px "
        f"resize, {trained.crop_size} px centre crop to {path}")


def run():
  runner.run(main, FLAG_VALUES)


if __name__ == "__main__":
  run()
