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
  l2sp                         fine-tuning with L2-SP (regularization.py) instead of
                               weight decay: the no-source regulariser
  linear_probe                 the target head alone trained, the base frozen
  lp_ft                        linear probe, then everything fine-tuned from it (Kumar
                               et al., ICLR 2022)
  pretrain_classes, pretrain_all  the selection of selective_classes (or the whole
                               source) alone first, then the target alone
                               (`pretrain_configs`)
(each row one entry of rows.REGISTRY)
plus a sweep of K0 (pool size per level) for selective_learned, one seed, and a sweep of
the budget (source images) for chosen partial-source rows, every seed.

Budget: with budget_images > 0 every row that uses part of the source uses that many
source images (random: exactly; per-image selections: the smallest K0 whose pools
together reach it; classes: whole classes until it is reached; `selection.budget`, the
policy sjft-select follows too), so selective and random compare at one stated size. With equal_target_images the target-only row takes
the joint batch's target share (1 / (1 + sources_per_target)), so every row sees the
same target images (the joint rows add the source on top); otherwise every row sees the same number of images a batch.

With head_warmup_steps > 0 every joint row is two runs, as lp_ft is: its fresh heads
are first trained with the base frozen (runs/<row>/seed<N>/warmup), then everything
from there, so no row pays for random heads' gradients in its base. The linear_probe
row is that warm-up on the target alone (and lp_ft's first stage).

Layout under `output_dir`: selections/<name>/round_000, runs/<row>/seed<N>/ (a training
run with its evaluation; a budget-sweep run at a budget other than budget_images:
runs/<row>_b<budget>/seed<N>), results.json, results.md and figures/.
"""

import dataclasses
import json
import os

import numpy as np

from sjft_tf import bounds, errors, outputs
from sjft_tf.data import spec as spec_lib
from sjft_tf.descriptors import store as descriptor_store
from sjft_tf.evaluation import evaluate as evaluate_lib
from sjft_tf.experiments import policy
from sjft_tf.experiments import rows as rows_lib
from sjft_tf.selection import budget, manifest, search, select, semantic
from sjft_tf.training import train as train_lib

# The rows (rows.REGISTRY) and their groups.
ROWS = rows_lib.names()
PAPER_ROWS = rows_lib.names(lambda r: r.in_paper)  # the paper's table: the default
NO_SOURCE_ROWS = rows_lib.names(lambda r: not r.uses_source)
ROW_TITLES = {name: row.title for name, row in rows_lib.REGISTRY.items()}
LEARNED_ROWS = rows_lib.names(lambda r: r.from_learned_ranking)
BUDGET_ROWS = rows_lib.names(lambda r: r.budget_sized)  # a budget sweep's rows


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
    rows: the rows of the table (ROWS; by default the paper's eight, PAPER_ROWS).
    eval_splits: the target splits the table reports: a validation split while
      settings are chosen, the test split once for the final table.
    k0: pool size per level of the selective rows (when budget_images is 0).
    k0_sweep: K0 values of a sweep of selective_learned (first seed); empty: none.
    budget_sweep: budgets (source images) of a sweep of budget_sweep_rows, every seed;
      a budget equal to budget_images reuses the table's runs. Empty: none.
    budget_sweep_rows: the rows of the budget sweep (BUDGET_ROWS), e.g. joint_random
      and the best selective row on validation.
    max_neighbours: neighbours ranked per target (caps pools).
    min_images_per_class: selected images a source class needs for a source-head output.
    seeds: one run per seed and row.
    rounds: selection rounds of the iterative row (the budget split evenly).
    views: evaluation views ("centre", "ten_crops").
    budget_images: source images every partial-source row uses (0: K0 decides, and
      the random row takes the learned selection's size). See the module docstring.
    equal_target_images: the target-only row's batch is the joint batch's target
      share (1 / (1 + sources_per_target)), so every row sees the same target images.
    feature_weights: weights of the deep-feature rows' network (pretrained even when
      the runs start from scratch); "": the training model's weights.
    feature_base: the deep-feature rows' network, a keras.applications name (e.g.
      MobileNet: a pretrained describer for a from-scratch model of another family);
      "": the training model's base, alpha and input size.
    feature_alpha: feature_base's width multiplier (bases that take one).
    feature_input_size: feature_base's input, pixels a side (images resized to it).
    head_warmup_steps: batches of training the heads with the base frozen before every
      joint row and lp_ft (module docstring); the linear_probe row is this run. 0: no
      warm-up (linear_probe and lp_ft then refuse).
    head_warmup_learning_rate: the warm-up's learning rate (cosine schedule).
    l2sp_row_alpha: the l2sp row's pull towards the pretrained weights (its weight decay
      is 0, as in Li et al. 2018; beta is the template's l2sp.beta).
    complete_runs_only: train, select and evaluate nothing; tabulate the runs already
      trained and evaluated (`completed`: the table of a study still in progress, each
      row's number of seeds shown).
    target_epochs: > 0: the batches follow the target's size (policy.schedule): about
      this many passes over its training images, cut into logged_epochs epochs of
      logging (train.total_steps and train.steps_per_epoch are then set by `sized`).
    logged_epochs: epochs of logging of target_epochs' schedule.
    head_warmup_epochs: > 0: head_warmup_steps from the target's size
      (policy.warmup_steps): this many passes over its training images.
    budget_fraction: > 0: budget_images is this share of the source's images
      (policy.budget_images), set by `sized`.
    pretrain_share: the share of the epochs the pre-training rows (pretrain_classes,
      pretrain_all) train on the source alone before the target (`pretrain_configs`).
  """
  output_dir: str
  learned_descriptors: str
  gabor_descriptors: str
  train: train_lib.TrainConfig
  rows: tuple[str, ...] = PAPER_ROWS
  eval_splits: tuple[str, ...] = ("val",)
  k0: int = dataclasses.field(default=50, metadata={"flag": {"lower_bound": 1}})
  k0_sweep: tuple[int, ...] = ()
  budget_sweep: tuple[int, ...] = ()
  budget_sweep_rows: tuple[str, ...] = ("joint_random", "selective_learned")
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
  feature_base: str = ""
  feature_alpha: float = dataclasses.field(default=0.25, metadata={"flag": {"lower_bound": 0.01}})
  feature_input_size: int = dataclasses.field(default=96, metadata={"flag": {"lower_bound": 8}})
  head_warmup_steps: int = dataclasses.field(default=0, metadata={"flag": {"lower_bound": 0}})
  head_warmup_learning_rate: float = dataclasses.field(
      default=0.01, metadata={"flag": {"lower_bound": 0.0}})
  l2sp_row_alpha: float = dataclasses.field(default=0.1, metadata={"flag": {"lower_bound": 0.0}})
  complete_runs_only: bool = False
  target_epochs: float = bounds.field(0.0, lower=0.0)
  logged_epochs: int = bounds.field(10, lower=1)
  head_warmup_epochs: float = bounds.field(0.0, lower=0.0)
  budget_fraction: float = bounds.field(0.0, lower=0.0, upper=1.0)
  pretrain_share: float = bounds.field(0.5, lower=0.0, upper=1.0)

  def __post_init__(self):
    bounds.check(self)
    unknown = sorted(set(self.rows) - set(ROWS))
    if unknown:
      raise errors.InputError(f"unknown rows {unknown}; known: {list(ROWS)}")
    if self.budget_sweep:
      if min(self.budget_sweep) < 1:
        raise errors.InputError(f"budget_sweep {list(self.budget_sweep)}: budgets must be >= 1")
      outside = sorted(set(self.budget_sweep_rows) - set(BUDGET_ROWS))
      if outside:
        raise errors.InputError(f"budget_sweep_rows {outside} are not sized by a budget; "
                                f"those that are: {list(BUDGET_ROWS)}")
    needing = sorted({"linear_probe", "lp_ft"} & set(self.rows))
    if needing and not (self.head_warmup_steps or self.head_warmup_epochs):
      raise errors.InputError(f"rows {needing} need a head warm-up: --head_warmup_steps > 0 or "
                              f"--head_warmup_epochs > 0")

  @property
  def features(self) -> semantic.FeatureConfig:
    """The network of the deep-feature rows: feature_base, or the training model's."""
    model = self.train.model
    if self.feature_base:
      return semantic.FeatureConfig(self.feature_base, self.feature_weights or model.weights,
                                    self.feature_alpha, self.feature_input_size)
    return semantic.FeatureConfig(model.base, self.feature_weights or model.weights,
                                  model.alpha, model.input_size)


def sized(config: AblationConfig) -> AblationConfig:
  """config with the sizes its policies take from the data (policy.py): the schedule
  from target_epochs and the target's training images, the warm-up from
  head_warmup_epochs, budget_images from budget_fraction and the source's images (in
  learned_descriptors). Fields whose policy is off (0) stay as they are."""
  train, changes = config.train, {}
  if config.target_epochs or config.head_warmup_epochs:
    images = spec_lib.load_spec(train.target_spec_dir).splits[train.target_split].num_examples
    per_batch = train.pairs.target_images_per_batch()
    if config.target_epochs:
      total, per_epoch = policy.schedule(images, per_batch, config.target_epochs,
                                         config.logged_epochs)
      changes["train"] = dataclasses.replace(train, total_steps=total,
                                             steps_per_epoch=per_epoch)
    if config.head_warmup_epochs:
      changes["head_warmup_steps"] = policy.warmup_steps(images, per_batch,
                                                         config.head_warmup_epochs)
  if config.budget_fraction:
    sources = sum(d["num_examples"] for d in descriptor_store.load_metadata(
        config.learned_descriptors)["datasets"] if d["role"] == "source")
    changes["budget_images"] = policy.budget_images(sources, config.budget_fraction)
  return dataclasses.replace(config, **changes) if changes else config


def budget_run_dir(config: AblationConfig, row: str, budget: int, seed: int) -> str:
  """The run of `row` and `seed` at `budget` source images: the table's own run when
  budget is config.budget_images, else runs/<row>_b<budget>/seed<N>."""
  name = row if budget == config.budget_images else f"{row}_b{budget}"
  return os.path.join(config.output_dir, "runs", name, f"seed{seed}")


def selected_round(descriptors_dir: str, output_dir: str, params: manifest.SelectionParams) -> str:
  """round_000 of a selection (reused when it exists with the same parameters)."""
  _, folder = select.initial_selection(descriptors_dir, output_dir, params,
                                       search.SearchConfig(method="auto"),
                                       write_subset=False)
  return folder


def row_rounds(config: AblationConfig, seed: int, k0: int | None = None,
               rows=None) -> dict:
  """The first selection round of each of `rows` (default config.rows; None for
  target_only) for this seed; only the selections these rows need are built. Every
  budget-sized row is sized by `budget.plan` from the learned bank's ranked round and
  config.budget_images; `k0` (the K0 sweep) makes only selective_learned, at that K0."""
  rows = ("selective_learned",) if k0 is not None else (
      config.rows if rows is None else rows)
  root = os.path.join(config.output_dir, "selections")
  params = manifest.SelectionParams(config.k0, config.max_neighbours,
                                    config.min_images_per_class)

  def ranked(descriptors_dir, name):
    """The bank's round 0 at --k0 (the learned one is the base the others index)."""
    return selected_round(descriptors_dir, os.path.join(root, f"{name}_ranked"), params)

  def at_k0(ranked_folder, name, chosen):
    return ranked_folder if chosen == config.k0 else manifest.k0_round(
        ranked_folder, os.path.join(root, f"{name}_k{chosen}"), chosen)

  def sized(ranked_round):
    return budget.plan(ranked_round.neighbours, config.k0, len(ranked_round.selected),
                       config.budget_images)

  kinds = {rows_lib.REGISTRY[row].selection for row in rows}
  made = {}
  if "gabor" in kinds:
    if not config.gabor_descriptors:
      raise errors.InputError("the selective_gabor row needs gabor_descriptors")
    gabor = ranked(config.gabor_descriptors, "gabor")
    made["gabor"] = at_k0(gabor, "gabor", sized(manifest.load(gabor)).k0)
  if kinds & {"all", "random", "learned", "deep", "classes"}:
    # The other rounds are made over the learned bank's ranked round at --k0 whichever
    # rows the study holds, so that adding a row leaves the other rows' inputs (and so
    # their runs) as they are.
    learned = ranked(config.learned_descriptors, "learned")
    learned_round = manifest.load(learned)
    sizes, num_sources = sized(learned_round), len(learned_round.source_ids)
    if "learned" in kinds:
      made["learned"] = at_k0(learned, "learned", k0 or sizes.k0)
    cache = os.path.join(config.output_dir, "features")
    if "all" in kinds:
      made["all"] = manifest.uniform_round(learned, np.arange(num_sources),
                                           os.path.join(root, "all"), "all")
    if "random" in kinds:
      made["random"] = manifest.uniform_round(
          learned, budget.random_rows(num_sources, sizes.images, seed),
          os.path.join(root, f"random_{sizes.images}_seed{seed}"), "random")
    if "deep" in kinds:
      made["deep"] = semantic.deep_round(learned, root, config.features, params,
                                         sizes.images, cache)
    if "classes" in kinds:
      made["classes"] = semantic.classes_round(
          learned, os.path.join(root, f"classes_{sizes.images}"), config.features,
          sizes.images, cache)
  firsts = {row: None for row in rows if row in NO_SOURCE_ROWS}
  firsts.update({row: made[rows_lib.REGISTRY[row].selection] for row in rows
                 if rows_lib.REGISTRY[row].uses_source})
  return firsts


def warmup_config(config: AblationConfig, run: train_lib.TrainConfig,
                  output_dir: str) -> train_lib.TrainConfig:
  """The head warm-up of `run`: its data and heads, the base frozen (batch norm in
  inference mode), config.head_warmup_steps batches, no L2-SP, one round."""
  steps = config.head_warmup_steps
  return dataclasses.replace(
      run, output_dir=output_dir, initial_run="", total_steps=steps,
      steps_per_epoch=run.steps_per_epoch if steps % run.steps_per_epoch == 0 else steps,
      epochs_per_round=0, model=dataclasses.replace(run.model, freeze="."),
      optimizer=dataclasses.replace(run.optimizer,
                                    learning_rate=config.head_warmup_learning_rate,
                                    warmup_steps=0),
      l2sp=dataclasses.replace(run.l2sp, alpha=0.0))


def run_configs(config: AblationConfig, row: str, seed: int, first_round: str | None,
                run_dir: str) -> list[train_lib.TrainConfig]:
  """The training runs of one row and seed, in order (each starts from the one before;
  the last is the row's model): the template with the row's selection and seed, chained
  as the row's entry says (rows.CHAINS)."""
  template = config.train
  chain = rows_lib.REGISTRY[row].chain
  epochs = template.total_steps // template.steps_per_epoch
  rounds = config.rounds if chain == "iterative" else 1
  if epochs % rounds:
    raise errors.InputError(f"{epochs} epochs do not split into {rounds} rounds")
  run = dataclasses.replace(template, output_dir=run_dir, first_round=first_round or "",
                            pairs=dataclasses.replace(template.pairs, seed=seed))
  if first_round is None:
    run = train_lib.target_only(run, run_dir, config.equal_target_images)
    if chain == "l2sp":
      return [dataclasses.replace(
          run, l2sp=dataclasses.replace(run.l2sp, alpha=config.l2sp_row_alpha),
          optimizer=dataclasses.replace(run.optimizer, weight_decay=0.0))]
    if chain in ("linear_probe", "lp_ft"):
      probe = warmup_config(config, run, os.path.join(
          os.path.dirname(os.path.dirname(run_dir)), "linear_probe", f"seed{seed}"))
      return [probe] if chain == "linear_probe" else [
          probe, dataclasses.replace(run, initial_run=probe.output_dir)]
    return [run]
  run = dataclasses.replace(run, target_spec_dir="",
                            epochs_per_round=epochs // rounds if rounds > 1 else 0)
  if chain == "pretrain":
    return pretrain_configs(config, run, epochs)
  if not config.head_warmup_steps:
    return [run]
  warmup = warmup_config(config, run, os.path.join(run_dir, "warmup"))
  return [warmup, dataclasses.replace(run, initial_run=warmup.output_dir)]


def pretrain_configs(config: AblationConfig, run: train_lib.TrainConfig,
                     epochs: int) -> list[train_lib.TrainConfig]:
  """The sequential recipe (pre-train on the source, then fine-tune; Cui et al. 2018,
  Ngiam et al. 2018) at the joint rows' budget: the first round(pretrain_share x epochs)
  epochs train on the selection alone (the source head; each batch holds one target
  image, whose loss weighs 0, and batch_size - 1 source images), in run_dir/pretrain;
  the rest train on the target alone with a fresh target head, from the first stage's
  base, in batches of the same size. Both stages have their own cosine schedule."""
  first = round(config.pretrain_share * epochs)
  if not 0 < first < epochs:
    raise errors.InputError(f"pretrain_share {config.pretrain_share} of {epochs} epochs leaves "
                            f"{first} for pre-training: both stages need at least one epoch")
  per_epoch, batch = run.steps_per_epoch, run.pairs.batch_size
  source = dataclasses.replace(
      run, output_dir=os.path.join(run.output_dir, "pretrain"), total_steps=first * per_epoch,
      target_loss_weight=0.0, validation_split="",
      pairs=dataclasses.replace(run.pairs, sources_per_target=batch - 1))
  target = train_lib.target_only(run, run.output_dir)
  return [source, dataclasses.replace(target, total_steps=(epochs - first) * per_epoch,
                                      initial_run=source.output_dir,
                                      fresh_target_head=True)]


def train_and_evaluate(config: AblationConfig, row: str, seed: int, first_round,
                       run_dir: str, target_dir: str) -> dict:
  """Trains (or reuses) the runs of one row and seed and evaluates the last on each of
  config.eval_splits (or reuses those evaluations).

  Returns:
    {"report": the last run's training report, "seconds": training seconds of all its
    runs (of the calls that trained them), "run_dir", "first_round": first_round,
    "evaluation": {split: evaluation}}.
  """
  chain = run_configs(config, row, seed, first_round, run_dir)
  reports = [train_lib.train(run) for run in chain]
  run_dir = chain[-1].output_dir
  return {"report": reports[-1], "seconds": sum(r["seconds_this_call"] for r in reports),
          "run_dir": run_dir, "first_round": first_round, "evaluation": {
              split: evaluate_lib.evaluate(run_dir, target_dir, evaluate_lib.EvalConfig(
                  split=split, views=tuple(config.views)))
              for split in config.eval_splits}}


def completed(config: AblationConfig, row: str, seed: int, run_dir: str) -> dict | None:
  """train_and_evaluate's result for a run already complete, read from its files:
  nothing is trained, searched, selected or evaluated.

  Complete: the last run's model is the file training wrote, every run before it in the
  chain has a report, and each of config.eval_splits has the evaluation that
  `evaluate` would reuse (`evaluate.stored_evaluation`: one rule decides both).
  Returns None for anything less.
  """
  try:
    run = outputs.TrainedRun.read(run_dir)
    first_round = run.first_round or None
    if rows_lib.REGISTRY[row].chain == "pretrain":  # the first stage has the selection
      first_round = outputs.TrainedRun.read(os.path.join(run_dir, "pretrain")).first_round
    chain = run_configs(config, row, seed, first_round, run_dir)
    reports = [outputs.TrainedRun.read(c.output_dir).report for c in chain[:-1]]
  except (FileNotFoundError, ValueError, KeyError):
    return None
  if not run.model_is_whole():
    return None
  evaluation = {}
  for split in config.eval_splits:  # by evaluate's own reuse rule
    try:
      stored = evaluate_lib.stored_evaluation(run_dir, config.train.target_spec_dir,
                                              evaluate_lib.EvalConfig(
                                                  split=split, views=tuple(config.views)),
                                              run=run)
    except (FileNotFoundError, ValueError, KeyError):
      return None
    if stored is None:
      return None
    evaluation[split] = stored
  reports.append(run.report)
  return {"report": run.report, "seconds": sum(r["seconds_this_call"] for r in reports),
          "run_dir": run_dir, "first_round": first_round, "evaluation": evaluation}


def selected_images(round_folder: str) -> int:
  """The number of selected source images of a round (from its selection.json)."""
  with open(os.path.join(round_folder, manifest.JSON_FILENAME)) as f:
    return json.load(f)["counts"]["selected_images"]


def summarise(values: list[float]) -> dict:
  """Mean and sample standard deviation (0 for one value)."""
  values = [float(v) for v in values]
  return {"values": values, "mean": float(np.mean(values)),
          "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0}
