r"""sjft-eval: target top-1 and mean per-class accuracy of a trained run on a split,
with one centre crop and with ten crops, a confusion matrix and a per-class PNG.

  sjft-eval --run_dir=runs/demo/train --spec_dir=runs/demo/data/target --split=test
Writes <run_dir>/evaluation_<split>.json and <run_dir>/evaluation_<split>_per_class.png.
"""

from absl import flags

from sjft_tf.evaluation import evaluate
from sjft_tf.cli import runner

_RUN_DIR = flags.DEFINE_string("run_dir", None, "A finished sjft-train run folder (holds model.keras).", required=True)
_SPEC_DIR = flags.DEFINE_string("spec_dir", None, "The target dataset folder (dataset_spec.json).", required=True)
_SPLIT = flags.DEFINE_string("split", "test", "Split to evaluate.")
_VIEWS = flags.DEFINE_multi_enum("views", ["centre", "ten_crops"], ["centre", "ten_crops"], "centre: one centre crop; ten_crops: centre + corners and flips, averaged.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 64, "Images per batch.", lower_bound=1)
_RESIZE_SIZE = flags.DEFINE_integer("resize_size", 0, "Square resize before cropping (0: the run's).")
_CROP_SIZE = flags.DEFINE_integer("crop_size", 0, "Crop side (0: the run's).")
_REUSE = flags.DEFINE_bool("reuse", True, "Keep an evaluation already written that is newer than the model and made the same way.")


def main(argv):
  del argv
  results = evaluate.evaluate(_RUN_DIR.value, _SPEC_DIR.value, evaluate.EvalConfig(
      _SPLIT.value, tuple(_VIEWS.value), _BATCH_SIZE.value, _RESIZE_SIZE.value,
      _CROP_SIZE.value, _REUSE.value))
  json_path, png_path = evaluate.result_paths(_RUN_DIR.value, _SPLIT.value)
  for view, result in results["views"].items():
    print(f"{_SPLIT.value} ({result['images']} images), {view}: top-1 {result['top1']:.4f}, "
          f"mean per-class accuracy {result['mean_per_class_accuracy']:.4f}")
  print(f"wrote {json_path} and {png_path}")


def run():
  runner.run(main)


if __name__ == "__main__":
  run()
