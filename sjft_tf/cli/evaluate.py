r"""sjft-eval: target top-1 and mean per-class accuracy of a trained run on a split,
with one centre crop and with ten crops, a confusion matrix and a per-class PNG.

  sjft-eval --run_dir=runs/demo/train --spec_dir=runs/demo/data/target --split=test
Writes <run_dir>/evaluation_<split>.json and <run_dir>/evaluation_<split>_per_class.png.
"""

import os

from absl import flags

from sjft_tf.evaluation import evaluate
from sjft_tf.cli import config_flags, runner

FLAG_VALUES = flags.FlagValues()
_RUN_DIR = flags.DEFINE_string("run_dir", None, "A finished sjft-train run folder (holds model.keras).", required=True, flag_values=FLAG_VALUES)
SPEC_DIR = flags.DEFINE_string("spec_dir", None, "The target dataset folder (dataset_spec.json).", required=True, flag_values=FLAG_VALUES)
# The fields of EvalConfig are flags of their names (--split, --views=centre ...).
config_from_flags = config_flags.define(FLAG_VALUES, evaluate.EvalConfig)


def main(argv):
  del argv
  config = config_from_flags()
  json_path, png_path = evaluate.result_paths(_RUN_DIR.value, config.split)
  before = os.stat(json_path).st_mtime_ns if os.path.exists(json_path) else None
  results = evaluate.evaluate(_RUN_DIR.value, SPEC_DIR.value, config)
  reused = before is not None and os.stat(json_path).st_mtime_ns == before
  for view, result in results["views"].items():
    print(f"{config.split} ({result['images']} images), {view}: top-1 {result['top1']:.4f}, "
          f"mean per-class accuracy {result['mean_per_class_accuracy']:.4f}")
  print(f"{'reused' if reused else 'wrote'} {json_path} and {png_path}")


def run():
  runner.run(main, FLAG_VALUES)


if __name__ == "__main__":
  run()
