"""Evaluates a finished training run on a split of a TFRecord dataset.

Writes next to the model (the run folder):
  evaluation_<split>.json           per view (centre crop, ten crops): top-1, mean
                                    per-class accuracy, per-class accuracies, confusion
                                    matrix (rows true, columns predicted), whether
                                    each image (spec order) is right (packed bits)
  evaluation_<split>_per_class.png  the per-class accuracies of each view
"""

import dataclasses
import json
import os

import numpy as np

from sjft_tf import bounds, errors, files, outputs
from sjft_tf.data import pipeline
from sjft_tf.data import spec as spec_lib
from sjft_tf.evaluation import metrics
from sjft_tf.training import predict


@dataclasses.dataclass
class EvalConfig:
  """What to evaluate.

  Attributes:
    split: the split of the dataset.
    views: any of "centre" (one centre crop) and "ten_crops" (centre + 4 corners and
      their flips, probabilities averaged; the paper's multi-crop test).
    batch_size: images per batch (ten views each for "ten_crops").
    resize_size, crop_size: 0 takes the training run's sizes.
    reuse: return the evaluation already written when it was made of this model (the
      fingerprint of its file) on the same dataset, split, sizes and (at least) these
      views.
  """
  split: str = "test"
  views: tuple = dataclasses.field(default=("centre", "ten_crops"), metadata={
      "flag": {"enum_values": ["centre", "ten_crops"]}})  # --views=centre --views=ten_crops
  batch_size: int = dataclasses.field(default=64, metadata={"flag": {"lower_bound": 1}})
  resize_size: int = bounds.field(0, lower=0)
  crop_size: int = bounds.field(0, lower=0)
  reuse: bool = True

  def __post_init__(self):
    bounds.check(self)


def result_paths(run_dir: str, split: str) -> tuple[str, str]:
  """(JSON path, PNG path) of the evaluation of `split`."""
  stem = os.path.join(run_dir, f"evaluation_{split}")
  return f"{stem}.json", f"{stem}_per_class.png"


def plot_per_class(results: dict, path: str) -> None:
  """Bar chart of each view's per-class accuracy (written atomically)."""
  plt = files.pyplot()
  names = list(next(iter(results["views"].values()))["per_class"])
  width = 0.8 / len(results["views"])
  figure, axes = plt.subplots(figsize=(max(6.0, 0.12 * len(names) + 2), 3.5))
  for i, (view, result) in enumerate(results["views"].items()):
    values = [np.nan if c["accuracy"] is None else c["accuracy"]
              for c in result["per_class"].values()]
    axes.bar(np.arange(len(names)) + i * width, values, width,
             label=f"{view}: top-1 {result['top1']:.3f}, "
                   f"mean per class {result['mean_per_class_accuracy']:.3f}")
  axes.set_xticks(np.arange(len(names)) + 0.4 - width / 2)
  axes.set_xticklabels(names, rotation=90, fontsize=5 if len(names) > 30 else 8)
  axes.set_ylim(0, 1.3)  # room for the legend above the bars
  axes.set_ylabel("accuracy")
  axes.set_title(f"{os.path.basename(os.path.abspath(results['run_dir']))}: "
                 f"{results['split']} split, per class")
  axes.legend(fontsize=7, loc="upper left")
  figure.tight_layout()
  files.save_figure_atomic(figure, path)


def _earlier_results(json_path: str, results: dict, identity) -> dict | None:
  """The evaluation in json_path when its `identity` keys (the model's and the images'
  fingerprints, the split, the sizes) match those of `results` (`files.matches`), with
  whichever views it holds; else None (also for a damaged file, which is made again).
  One of an older version, which recorded no fingerprint of the images, must be of the
  same dataset folder."""
  if not os.path.exists(json_path):
    return None
  try:
    with open(json_path) as f:
      earlier = json.load(f)
  except (json.JSONDecodeError, UnicodeDecodeError):
    return None
  if not isinstance(earlier, dict) or not isinstance(earlier.get("views"), dict):
    return None
  same = files.matches({k: earlier[k] for k in identity if k in earlier},
                       {k: results[k] for k in identity})
  if files.INPUTS_KEY not in earlier:
    same = same and earlier.get("spec_dir") == results["spec_dir"]
  return earlier if same else None


def _request(run: outputs.TrainedRun, spec_dir: str, config: EvalConfig):
  """(spec, reader, the results' head, identity keys) of evaluating `run` as config
  asks: what a stored evaluation must match to be reused."""
  spec = spec_lib.load_spec(spec_dir)
  if spec.class_names != run.target_class_names:
    raise errors.InputError(f"{spec_dir}: its {len(spec.class_names)} classes are not the "
                            f"{len(run.target_class_names)} target classes of {run.run_dir}")
  spec.split(config.split)  # names the split in the error when it is missing
  reader = pipeline.ReaderConfig(batch_size=config.batch_size,
                                 resize_size=config.resize_size or run.resize_size,
                                 crop_size=config.crop_size or run.crop_size)
  identity = {"split": config.split, "resize_size": reader.resize_size,
              "crop_size": reader.crop_size, "model": run.model_fingerprint(),
              files.INPUTS_KEY: spec.split_fingerprint(config.split)}
  results = {"run_dir": os.path.abspath(run.run_dir), "spec_dir": spec.directory,
             **identity, "views": {}}
  return spec, reader, results, identity


def _image_is_whole(path: str) -> bool:
  try:
    from PIL import Image  # pylint: disable=g-import-not-at-top
    with Image.open(path) as image:
      image.load()
    return True
  except Exception:  # pylint: disable=broad-except
    return False


def _reusable(earlier: dict | None, config: EvalConfig, png_path: str) -> bool:
  """The reuse rule: a stored evaluation of the same identity holding every view asked
  for with its per-image results, whose per-class figure is whole (a damaged figure is
  made again with it)."""
  return (earlier is not None and set(config.views) <= set(earlier["views"])
          and all("correct" in earlier["views"][view] for view in config.views)
          and _image_is_whole(png_path))


def stored_evaluation(run_dir: str, spec_dir: str, config: EvalConfig,
                      run: outputs.TrainedRun | None = None) -> dict | None:
  """The evaluation `evaluate(run_dir, spec_dir, config)` would reuse, read from its
  files (nothing is computed); None when it would evaluate. `run`: run_dir already
  read (its model's fingerprint is then hashed once for several splits)."""
  run = run or outputs.TrainedRun.read(run_dir)
  _, _, results, identity = _request(run, spec_dir, config)
  json_path, png_path = result_paths(run_dir, config.split)
  earlier = _earlier_results(json_path, results, identity)
  return earlier if _reusable(earlier, config, png_path) else None


def evaluate(run_dir: str, spec_dir: str, config: EvalConfig = EvalConfig()) -> dict:
  """Evaluates the run's target head on `config.split` of the dataset in `spec_dir`.

  Returns:
    The results in evaluation_<split>.json (module docstring): every view it holds,
    the asked ones included.
  Raises:
    ValueError: the dataset's classes are not the model's target classes.
  """
  run = outputs.TrainedRun.read(run_dir)
  spec, reader, results, identity = _request(run, spec_dir, config)
  json_path, png_path = result_paths(run_dir, config.split)
  earlier = _earlier_results(json_path, results, identity)
  if config.reuse and _reusable(earlier, config, png_path):
    return earlier
  # Views of the same model and images computed before are kept beside the new ones.
  results["views"] = dict(earlier["views"]) if earlier is not None else {}
  model = run.load_model()
  for view in config.views:
    ids, labels, probabilities = predict.target_probabilities(
        model, spec, config.split, reader, view)
    results["views"][view] = metrics.classification_metrics(labels, probabilities,
                                                           spec.class_names)
  files.write_json_atomic(json_path, results)
  plot_per_class(results, png_path)
  return results
