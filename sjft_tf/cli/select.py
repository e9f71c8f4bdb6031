r"""sjft-select: choose source images for the target (round 0), or update the choice from
predictions on the target's training images (round N+1).

  sjft-select --descriptors_dir=runs/flowers102/descriptors --output_dir=runs/flowers102/selection \
      --k0=300 --max_neighbours=5000 [--search=auto|exact|scann]
  sjft-select --previous_round=runs/flowers102/selection/round_000 \
      --predictions=runs/flowers102/train/round_000/target_train_predictions.npz
The predictions file is an .npz with `ids` (target training ids) and `probabilities`
([n, target classes]).
"""

import numpy as np
from absl import app, flags

from sjft_tf.selection import levels, manifest, report, search, select, semantic
from sjft_tf.cli import beam_flags, config_flags, runner

FLAG_VALUES = flags.FlagValues()
_RUNNER_OPTIONS = beam_flags.define(FLAG_VALUES)
_DESCRIPTORS_DIR = flags.DEFINE_string("descriptors_dir", None, "Descriptor folder (sjft-descriptors) for round 0.", flag_values=FLAG_VALUES)
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Selection folder; rounds go to round_NNN inside (update: default beside the previous round).", flag_values=FLAG_VALUES)
_PREVIOUS_ROUND = flags.DEFINE_string("previous_round", None, "A round folder to update from --predictions.", flag_values=FLAG_VALUES)
_PREDICTIONS = flags.DEFINE_string("predictions", None, "npz with ids and probabilities of the target training images.", flag_values=FLAG_VALUES)

_METHOD = flags.DEFINE_enum("method", "filter_bank", ["filter_bank", "deep", "classes"], "Round 0 by the descriptors' filter-bank statistics (the paper), by the cosine of a pretrained network's pooled features (deep: each target's k0 nearest), or whole source classes nearest the target classes (classes, up to --budget_images).", flag_values=FLAG_VALUES)
_BUDGET = flags.DEFINE_integer("budget_images", 0, "Source images to select, as in sjft-reproduce: filter_bank and deep take the smallest K0 whose pools reach it (the ranked round goes to --output_dir/ranked), classes takes whole classes until reached (needed). 0: --k0 decides.", lower_bound=0, flag_values=FLAG_VALUES)
_TARGET_SPLIT = flags.DEFINE_string("target_split", "train", "Target split whose images get neighbours.", flag_values=FLAG_VALUES)
_REUSE = flags.DEFINE_bool("reuse", True, "Keep a round 0 already in --output_dir made from the same descriptors and parameters (rerun = resume).", flag_values=FLAG_VALUES)
_WRITE_SUBSET = flags.DEFINE_bool("write_subset", True, "Write the selected source images as TFRecords (subset/).", flag_values=FLAG_VALUES)
# The fields of SelectionParams (--k0, --max_neighbours, --min_images_per_class,
# --max_level), LevelRule, SearchConfig (--search, --index_*) and FeatureConfig
# (--feature_*) are flags of their names.
_PARAMS = config_flags.define(FLAG_VALUES, manifest.SelectionParams)
_RULE = config_flags.define(FLAG_VALUES, levels.LevelRule, skip=("max_level",))
_SEARCH = config_flags.define(
    FLAG_VALUES, search.SearchConfig, prefixes={"index": "index_"}, names={
        "method": "search", "index.num_leaves": "index_leaves"},
    skip=("num_neighbours", "index_dir", "pipeline_args", "work_dir"))
_FEATURES = config_flags.define(FLAG_VALUES, semantic.FeatureConfig, prefixes={"": "feature_"})


def summary(selection: manifest.Selection, folder: str) -> str:
  values, counts = np.unique(selection.levels, return_counts=True)
  return "\n".join([
      f"round {selection.round_index} in {folder}",
      f"  {len(selection.target_ids)} target images, levels "
      + ", ".join(f"{v}: {c}" for v, c in zip(values, counts)),
      f"  {len(selection.selected)} source images selected from "
      f"{len(selection.retained_classes)} source classes "
      f"(mean pool {selection.pool_sizes.mean():.0f}, "
      f"{int((selection.pool_sizes == 0).sum())} targets without a pool)",
      f"  search: {selection.provenance.search_method}"])


def _semantic_round(params: manifest.SelectionParams, config: search.SearchConfig):
  """Round 0 of --method=deep or classes into --output_dir (the filter-bank round it
  is made over, which lists the images, goes to --output_dir/filter_bank; a deep round
  at a budget ranks into --output_dir/ranked)."""
  if _METHOD.value == "classes" and not _BUDGET.value:
    raise app.UsageError("--method=classes needs --budget_images")
  _, base_folder = select.initial_selection(
      _DESCRIPTORS_DIR.value, f"{_OUTPUT_DIR.value}/filter_bank", params, config,
      _TARGET_SPLIT.value, write_subset=False, reuse=_REUSE.value)
  features = _FEATURES()  # (FeatureConfig drops --alpha for a network without a width)
  cache = f"{_OUTPUT_DIR.value}/features"
  if _METHOD.value == "classes":
    folder = semantic.classes_round(base_folder, _OUTPUT_DIR.value, features,
                                    _BUDGET.value, cache, _REUSE.value)
  else:
    folder = semantic.nearest_round(base_folder, _ranked_dir(), features, params, cache,
                                    reuse=_REUSE.value)
  return folder


def _ranked_dir() -> str:
  """Where the ranked round goes: --output_dir, or with a budget its ranked/ folder."""
  return f"{_OUTPUT_DIR.value}/ranked" if _BUDGET.value else _OUTPUT_DIR.value


def _first_round(params: manifest.SelectionParams, config: search.SearchConfig):
  """Round 0 by --method, at --budget_images when set (`budget.plan`, as sjft-reproduce
  sizes its rows). Returns (the Selection, its round folder)."""
  if _METHOD.value == "filter_bank":
    selection, folder = select.initial_selection(
        _DESCRIPTORS_DIR.value, _ranked_dir(), params, config, _TARGET_SPLIT.value,
        _WRITE_SUBSET.value and not _BUDGET.value, _REUSE.value)
    if not _BUDGET.value:
      return selection, folder
  else:
    folder = _semantic_round(params, config)
    if _METHOD.value == "classes" or not _BUDGET.value:
      selection = manifest.load(folder)
      if _WRITE_SUBSET.value:
        select.write_round_subset(selection, folder)
      return selection, folder
  return select.budget_round(folder, _OUTPUT_DIR.value, _BUDGET.value, _WRITE_SUBSET.value)


def main(argv):
  del argv
  if bool(_DESCRIPTORS_DIR.value) == bool(_PREVIOUS_ROUND.value):
    raise app.UsageError("give --descriptors_dir (round 0) or --previous_round (an update)")
  if _PREVIOUS_ROUND.value:
    if not _PREDICTIONS.value:
      raise app.UsageError("--previous_round needs --predictions")
    with np.load(_PREDICTIONS.value) as data:
      ids, probabilities = data["ids"], data["probabilities"]
    rule = _RULE(max_level=_PARAMS().max_level)
    selection, folder = select.next_round(_PREVIOUS_ROUND.value, ids, probabilities, rule,
                                          _OUTPUT_DIR.value, _WRITE_SUBSET.value)
  else:
    if not _OUTPUT_DIR.value:
      raise app.UsageError("--descriptors_dir needs --output_dir")
    params = _PARAMS()
    with _RUNNER_OPTIONS() as pipeline_args:
      config = _SEARCH(index_dir=f"{_OUTPUT_DIR.value}/index", pipeline_args=pipeline_args)
      selection, folder = _first_round(params, config)
  overall = report.write(selection, folder)["overall"]["top"]
  print(summary(selection, folder))
  print("  most selected source classes: " + ", ".join(
      f"{t['name']} {t['images']} (lift {t['lift']})" for t in overall[:5])
        + f"; per target class: {folder}/{report.JSON_FILENAME}")


def run():
  runner.run(main, FLAG_VALUES)


if __name__ == "__main__":
  run()
