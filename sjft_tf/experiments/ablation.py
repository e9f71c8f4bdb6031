"""The paper's ablation table (METHOD.md section 5) as one experiment: six ways to use
a source for the same target, the same training budget for each, several seeds.

Rows (ROWS):
  target_only                  fine-tuning on the target alone (target head only)
  joint_all                    joint, every target paired with any source image
  joint_random                 joint, a random source subset the size of the selection
  selective_learned            joint, pools of the learned-bank selection, one round
  selective_gabor              joint, pools of the Gabor-bank selection, one round
  selective_learned_iterative  joint, learned selection, rounds of hard-sample retrieval
plus a sweep of K0 (pool size per level) for selective_learned, one seed.

Layout under `output_dir`: selections/<name>/round_000, runs/<row>/seed<N>/ (a training
run with its evaluation), results.json, results.md and figures/.
"""

import dataclasses
import json
import os

import numpy as np

from sjft_tf.evaluation import evaluate as evaluate_lib
from sjft_tf.selection import manifest, search, select
from sjft_tf.training import train as train_lib

ROWS = ("target_only", "joint_all", "joint_random", "selective_learned", "selective_gabor",
        "selective_learned_iterative")
ROW_TITLES = {
    "target_only": "fine-tune, no source",
    "joint_all": "joint, all source",
    "joint_random": "joint, random source",
    "selective_learned": "selective, no iteration",
    "selective_gabor": "selective, Gabor",
    "selective_learned_iterative": "selective (iterative)",
}


@dataclasses.dataclass
class AblationConfig:
  """The experiment.

  Attributes:
    output_dir: where everything goes (module docstring).
    learned_descriptors, gabor_descriptors: descriptor folders (sjft-descriptors) of the
      target's training split and the source, one per bank.
    test_split: the target split the table reports (the official test split).
    k0: pool size per level of the selective rows.
    k0_sweep: K0 values of the sweep (selective_learned, first seed).
    max_neighbours: neighbours ranked per target (caps pools).
    min_images_per_class: selected images a source class needs for a source-head output.
    seeds: one run per seed and row.
    rounds: selection rounds of the iterative row (the budget split evenly).
    train: the training template: model, optimizer, batch, sizes, total_steps,
      steps_per_epoch; output_dir, first_round, seed and rounds are set per run.
    views: evaluation views ("centre", "ten_crops").
  """
  output_dir: str
  learned_descriptors: str
  gabor_descriptors: str
  train: train_lib.TrainConfig
  test_split: str = "test"
  k0: int = 50
  k0_sweep: tuple = (10, 50, 150)
  max_neighbours: int = 1000
  min_images_per_class: int = 5
  seeds: tuple = (0, 1, 2)
  rounds: int = 3
  views: tuple = ("centre",)


def selected_round(descriptors_dir: str, output_dir: str, params: manifest.SelectionParams) -> str:
  """round_000 of a selection (reused when it exists with the same parameters)."""
  _, folder = select.initial_selection(descriptors_dir, output_dir, params,
                                       search.SearchConfig(method="auto"),
                                       write_subset=False)
  return folder


def uniform_round(base_folder: str, source_rows: np.ndarray, output_dir: str,
                  name: str) -> str:
  """round_000 where every target's pool is `source_rows` (indices into the base
  selection's source_ids): the joint rows without selection. Reused when present."""
  folder = manifest.round_dir(output_dir, 0)
  if os.path.exists(os.path.join(folder, manifest.JSON_FILENAME)):
    return folder
  base = manifest.load(base_folder)
  rows = np.asarray(source_rows, np.int64)
  uniform = manifest.Selection(
      round_index=0,
      params=manifest.SelectionParams(len(rows), len(rows), base.params.min_images_per_class),
      info={**base.info, "search": {"method": name}, "descriptors_dir": None},
      target_ids=base.target_ids, target_labels=base.target_labels, levels=base.levels,
      neighbours=np.broadcast_to(rows, (len(base.target_ids), len(rows))),
      distances=np.zeros((len(base.target_ids), len(rows)), np.float32),
      source_ids=base.source_ids, source_labels=base.source_labels,
      source_class_names=base.source_class_names)
  return manifest.save(manifest.derive(uniform), output_dir)


def row_rounds(config: AblationConfig, seed: int, k0: int | None = None) -> dict:
  """Each row's first selection round (None for target_only) for this seed."""
  params = manifest.SelectionParams(k0 or config.k0, config.max_neighbours,
                                    config.min_images_per_class)
  root = os.path.join(config.output_dir, "selections")
  learned = selected_round(config.learned_descriptors,
                           os.path.join(root, f"learned_k{params.k0}"), params)
  if k0 is not None:
    return {"selective_learned": learned}
  gabor = selected_round(config.gabor_descriptors, os.path.join(root, f"gabor_k{params.k0}"),
                         params)
  base = manifest.load(learned)
  everything = np.arange(len(base.source_ids))
  random_rows = np.sort(np.random.default_rng(seed).choice(
      everything, size=len(base.selected), replace=False))
  return {
      "target_only": None,
      "joint_all": uniform_round(learned, everything, os.path.join(root, "all"), "all"),
      "joint_random": uniform_round(learned, random_rows,
                                    os.path.join(root, f"random_seed{seed}"), "random"),
      "selective_learned": learned,
      "selective_gabor": gabor,
      "selective_learned_iterative": learned,
  }


def run_config(config: AblationConfig, row: str, seed: int, first_round: str | None,
               run_dir: str) -> train_lib.TrainConfig:
  """The training run of one row and seed: the template with its selection and seed."""
  template = config.train
  epochs = template.total_steps // template.steps_per_epoch
  rounds = config.rounds if row == "selective_learned_iterative" else 1
  if epochs % rounds:
    raise ValueError(f"{epochs} epochs do not split into {rounds} rounds")
  return dataclasses.replace(
      template, output_dir=run_dir, first_round=first_round or "",
      target_spec_dir=template.target_spec_dir if first_round is None else "",
      epochs_per_round=epochs // rounds if rounds > 1 else 0,
      pairs=dataclasses.replace(template.pairs, seed=seed))


def train_and_evaluate(config: AblationConfig, row: str, seed: int, first_round,
                       run_dir: str, target_dir: str) -> dict:
  """Trains (or reuses) one run and evaluates it on the test split (or reuses that)."""
  report = train_lib.train(run_config(config, row, seed, first_round, run_dir))
  return {"report": report, "evaluation": evaluate_lib.evaluate(
      run_dir, target_dir, evaluate_lib.EvalConfig(split=config.test_split,
                                                   views=tuple(config.views)))}


def selected_images(round_folder: str) -> int:
  """The number of selected source images of a round (from its selection.json)."""
  with open(os.path.join(round_folder, manifest.JSON_FILENAME)) as f:
    return json.load(f)["counts"]["selected_images"]


def summarise(values: list[float]) -> dict:
  """Mean and sample standard deviation (0 for one value)."""
  values = [float(v) for v in values]
  return {"values": values, "mean": float(np.mean(values)),
          "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0}
