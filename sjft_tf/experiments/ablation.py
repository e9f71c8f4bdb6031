"""The paper's ablation table (METHOD.md section 5) as one experiment: six ways to use
a source for the same target, the same training budget for each, several seeds.

Rows (ROWS):
  target_only                  fine-tuning on the target alone (target head only)
  joint_all                    joint, every target paired with any source image
  joint_random                 joint, a random source subset the size of the selection
  selective_learned            joint, pools of the learned-bank selection, one round
  selective_gabor              joint, pools of the Gabor-bank selection, one round
  selective_learned_iterative  joint, learned selection, rounds of hard-sample retrieval
  selective_deep               joint, pools of each target's nearest sources by the
                               cosine of pretrained pooled features (semantic.py)
  selective_classes            joint, the source classes whose mean feature is nearest
                               a target class mean, whole classes (semantic.py)
plus a sweep of K0 (pool size per level) for selective_learned, one seed.

Budget: with budget_images > 0 every row that uses part of the source uses that many
source images (random: exactly; per-image selections: the smallest K0 whose pools
together reach it; classes: whole classes until it is reached), so selective and
random compare at one stated size. With equal_target_images the target-only row takes
half the joint batch, so every row sees the same target images (the joint rows add
the source on top); otherwise every row sees the same number of images a batch.

Layout under `output_dir`: selections/<name>/round_000, runs/<row>/seed<N>/ (a training
run with its evaluation), results.json, results.md and figures/.
"""

import dataclasses
import json
import os

import numpy as np

from sjft_tf.evaluation import evaluate as evaluate_lib
from sjft_tf.selection import manifest, search, select, semantic
from sjft_tf.training import train as train_lib

ROWS = ("target_only", "joint_all", "joint_random", "selective_learned", "selective_gabor",
        "selective_learned_iterative", "selective_deep", "selective_classes")
ROW_TITLES = {
    "target_only": "fine-tune, no source",
    "joint_all": "joint, all source",
    "joint_random": "joint, random source",
    "selective_learned": "selective, no iteration",
    "selective_gabor": "selective, Gabor",
    "selective_learned_iterative": "selective (iterative)",
    "selective_deep": "selective, deep features",
    "selective_classes": "selective, deep class means",
}
LEARNED_ROWS = ("joint_all", "joint_random", "selective_learned",
                "selective_learned_iterative", "selective_deep", "selective_classes")


@dataclasses.dataclass
class AblationConfig:
  """The experiment.

  Attributes:
    output_dir: where everything goes (module docstring).
    learned_descriptors, gabor_descriptors: descriptor folders (sjft-descriptors) of the
      target's training split and the source, one per bank (Gabor: only the
      selective_gabor row needs it).
    train: the training template: model, optimizer, batch, sizes, total_steps,
      steps_per_epoch, the target (target_spec_dir); output_dir, first_round, seed
      and rounds are set per run.
    rows: the rows of the table (ROWS).
    eval_splits: the target splits the table reports: a validation split while
      settings are chosen, the test split once for the final table.
    k0: pool size per level of the selective rows (when budget_images is 0).
    k0_sweep: K0 values of a sweep of selective_learned (first seed); empty: none.
    max_neighbours: neighbours ranked per target (caps pools).
    min_images_per_class: selected images a source class needs for a source-head output.
    seeds: one run per seed and row.
    rounds: selection rounds of the iterative row (the budget split evenly).
    views: evaluation views ("centre", "ten_crops").
    budget_images: source images every partial-source row uses (0: K0 decides, and
      the random row takes the learned selection's size). See the module docstring.
    equal_target_images: the target-only row's batch is half the joint batch, so
      every row sees the same target images.
    feature_weights: weights of the deep-feature rows' network, the training model's
      base (pretrained even when the runs start from scratch); "": the model's weights.
  """
  output_dir: str
  learned_descriptors: str
  gabor_descriptors: str
  train: train_lib.TrainConfig
  rows: tuple[str, ...] = ROWS
  eval_splits: tuple[str, ...] = ("val",)
  k0: int = dataclasses.field(default=50, metadata={"flag": {"lower_bound": 1}})
  k0_sweep: tuple[int, ...] = ()
  max_neighbours: int = dataclasses.field(default=1000, metadata={"flag": {"lower_bound": 1}})
  min_images_per_class: int = dataclasses.field(default=5,
                                                metadata={"flag": {"lower_bound": 1}})
  seeds: tuple[int, ...] = (0, 1, 2)
  rounds: int = dataclasses.field(default=3, metadata={"flag": {"lower_bound": 1}})
  views: tuple[str, ...] = dataclasses.field(default=("centre",), metadata={
      "flag": {"enum_values": ["centre", "ten_crops"]}})
  budget_images: int = dataclasses.field(default=0, metadata={"flag": {"lower_bound": 0}})
  equal_target_images: bool = True
  feature_weights: str = ""

  def __post_init__(self):
    unknown = sorted(set(self.rows) - set(ROWS))
    if unknown:
      raise ValueError(f"unknown rows {unknown}; known: {list(ROWS)}")

  @property
  def features(self) -> semantic.FeatureConfig:
    """The network of the deep-feature rows: the training model's base."""
    model = self.train.model
    return semantic.FeatureConfig(model.base, self.feature_weights or model.weights,
                                  model.alpha, model.input_size)


def selected_round(descriptors_dir: str, output_dir: str, params: manifest.SelectionParams) -> str:
  """round_000 of a selection (reused when it exists with the same parameters)."""
  _, folder = select.initial_selection(descriptors_dir, output_dir, params,
                                       search.SearchConfig(method="auto"),
                                       write_subset=False)
  return folder


def _budget_k0(base: manifest.Selection, config: AblationConfig, k0: int | None) -> int:
  if k0 is not None or not config.budget_images:
    return k0 or config.k0
  return semantic.k0_for_budget(base.neighbours, config.budget_images)


def row_rounds(config: AblationConfig, seed: int, k0: int | None = None,
               rows=None) -> dict:
  """The first selection round of each of `rows` (default config.rows; None for
  target_only) for this seed; only the selections these rows need are built."""
  rows = config.rows if rows is None else rows
  root = os.path.join(config.output_dir, "selections")
  firsts = {"target_only": None} if "target_only" in rows else {}
  if k0 is not None:
    rows = ("selective_learned",)

  def ranked(descriptors_dir, name, at_budget=True):
    """(round 0 with pools at the budget's K0, ranked neighbours) of a bank; without
    `at_budget`, round 0 at --k0 (the base that the other selections index)."""
    params = manifest.SelectionParams(config.k0, config.max_neighbours,
                                      config.min_images_per_class)
    folder = selected_round(descriptors_dir, os.path.join(root, f"{name}_ranked"), params)
    base = manifest.load(folder)
    chosen = _budget_k0(base, config, k0)
    if chosen == config.k0 or not at_budget:
      return folder, base
    params = dataclasses.replace(params, k0=chosen)
    return selected_round(descriptors_dir, os.path.join(root, f"{name}_k{chosen}"),
                          params), base

  if "selective_gabor" in rows:
    if not config.gabor_descriptors:
      raise ValueError("the selective_gabor row needs gabor_descriptors")
    firsts["selective_gabor"] = ranked(config.gabor_descriptors, "gabor")[0]
  if not any(row in LEARNED_ROWS for row in rows):
    return firsts
  learned, base = ranked(config.learned_descriptors, "learned", at_budget=any(
      row in rows for row in ("selective_learned", "selective_learned_iterative")))
  for row in ("selective_learned", "selective_learned_iterative"):
    if row in rows:
      firsts[row] = learned
  size = config.budget_images or selected_images(learned)
  everything = np.arange(len(base.source_ids))
  if "joint_all" in rows:
    firsts["joint_all"] = manifest.uniform_round(learned, everything,
                                                 os.path.join(root, "all"), "all")
  if "joint_random" in rows:
    random_rows = np.sort(np.random.default_rng(seed).choice(
        everything, size=min(size, len(everything)), replace=False))
    firsts["joint_random"] = manifest.uniform_round(
        learned, random_rows, os.path.join(root, f"random_{size}_seed{seed}"), "random")
  cache = os.path.join(config.output_dir, "features")
  if "selective_deep" in rows:
    firsts["selective_deep"] = semantic.deep_round(
        learned, root, config.features, base.params, size, cache)
  if "selective_classes" in rows:
    firsts["selective_classes"] = semantic.classes_round(
        learned, os.path.join(root, f"classes_{size}"), config.features, size, cache)
  return firsts


def run_config(config: AblationConfig, row: str, seed: int, first_round: str | None,
               run_dir: str) -> train_lib.TrainConfig:
  """The training run of one row and seed: the template with its selection and seed."""
  template = config.train
  epochs = template.total_steps // template.steps_per_epoch
  rounds = config.rounds if row == "selective_learned_iterative" else 1
  if epochs % rounds:
    raise ValueError(f"{epochs} epochs do not split into {rounds} rounds")
  run = dataclasses.replace(template, output_dir=run_dir, first_round=first_round or "",
                            pairs=dataclasses.replace(template.pairs, seed=seed))
  if first_round is None:
    return train_lib.target_only(run, run_dir, config.equal_target_images)
  return dataclasses.replace(run, target_spec_dir="",
                             epochs_per_round=epochs // rounds if rounds > 1 else 0)


def train_and_evaluate(config: AblationConfig, row: str, seed: int, first_round,
                       run_dir: str, target_dir: str) -> dict:
  """Trains (or reuses) one run and evaluates it on each of config.eval_splits (or
  reuses those evaluations).

  Returns:
    {"report": the training report, "evaluation": {split: evaluation}}.
  """
  report = train_lib.train(run_config(config, row, seed, first_round, run_dir))
  return {"report": report, "evaluation": {split: evaluate_lib.evaluate(
      run_dir, target_dir, evaluate_lib.EvalConfig(split=split, views=tuple(config.views)))
      for split in config.eval_splits}}


def selected_images(round_folder: str) -> int:
  """The number of selected source images of a round (from its selection.json)."""
  with open(os.path.join(round_folder, manifest.JSON_FILENAME)) as f:
    return json.load(f)["counts"]["selected_images"]


def summarise(values: list[float]) -> dict:
  """Mean and sample standard deviation (0 for one value)."""
  values = [float(v) for v in values]
  return {"values": values, "mean": float(np.mean(values)),
          "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0}
