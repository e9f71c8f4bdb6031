"""The training stage: selective joint fine-tuning rounds (or plain fine-tuning) of one
model under a tf.distribute strategy, resumable, logged to TensorBoard.

Run folder (`output_dir`):
  train_config.json   the configuration it ran with (a rerun must match it)
  backup/             BackupAndRestore's state; a killed run resumes from it
  logs/               TensorBoard: both heads' loss and accuracy, learning rate, pool
                      sizes, levels, per epoch (an epoch = `steps_per_epoch` batches)
  history.csv         the same per epoch
  rounds/             selection rounds 1, 2, ... and the predictions that made them
  model.keras         the trained model (written last)
  train_report.json   classes, counts, images/s, final metrics
A finished run is read back as an `outputs.TrainedRun`.

Two drivers share the model, its compiled loss and `model.train_step`: Keras'
`model.fit` (one device, MirroredStrategy) and a custom loop that calls the same train
step through `strategy.run` (MultiWorkerMirroredStrategy, where Keras 3's fit fails:
keras#20585). Both run the same callbacks.
"""

import dataclasses
import json
import os
import shutil
import time

import keras
import tensorflow as tf
from absl import logging

from sjft_tf import bounds, errors, files, integrity, outputs
from sjft_tf.data import pipeline
from sjft_tf.data import spec as spec_lib
from sjft_tf.selection import levels as levels_lib
from sjft_tf.selection import manifest
from sjft_tf.training import callbacks as callbacks_lib
from sjft_tf.training import finished
from sjft_tf.training import losses, optimization, regularization, resumable
from sjft_tf.training.model import TARGET_HEAD, ModelConfig, build_joint_model, copy_weights
from sjft_tf.training.sampler import PairConfig, PairSampler

CONFIG_FILENAME = outputs.TRAIN_CONFIG_FILENAME
REPORT_FILENAME = outputs.TRAIN_REPORT_FILENAME
MODEL_FILENAME = outputs.MODEL_FILENAME
STRATEGIES = ("mirrored", "multi_worker", "one_device")


@dataclasses.dataclass
class TrainConfig:
  """One training run.

  Attributes:
    output_dir: the run folder (module docstring).
    first_round: the selection round to start from (round_000 of sjft-select); ""
      trains on the target alone (plain fine-tuning, the baseline).
    target_spec_dir, target_split: the target training images when first_round is ""
      (otherwise the selection names them).
    initial_run: a finished run whose model starts this one (its base, and each head
      with the same classes; `model.copy_weights`) instead of model.weights alone:
      the second stage of linear-probe-then-fine-tune, or of a joint run whose fresh
      heads were first trained with the base frozen. "": model.weights.
    fresh_target_head: with initial_run, the target head starts from its initialiser
      even where initial_run has one of the same classes (its target head was not
      trained: the second stage of pre-training on the source alone).
    model: the shared base and heads.
    optimizer: SGD, schedule, accumulation.
    pairs: batch (images of both domains), augmentation sizes, seed; its crop_size is
      the model's input_size (None sets it; another value is refused).
    total_steps: batches to train, all rounds together.
    steps_per_epoch: batches per epoch: the interval of backups, logs and rounds.
    epochs_per_round: a selection round lasts this many epochs; 0: one round, no
      hard-sample retrieval.
    target_loss_weight, source_loss_weight: weights of the heads' losses (paper: 0.5).
    level_rule: the hard-sample rule between rounds; its max_level may not exceed the
      first round's (SelectionParams.max_level, which fixed the source head).
    l2sp: L2-SP regularisation towards the starting weights (off by default).
    target_batch_norm_for_levels: the predictions that set the next round's levels use
      batch norm statistics re-estimated on the target training images (the model is
      unchanged); for runs from scratch, whose moving averages settle late.
    validation_split: a split of the target evaluated (target head, centre crop) after
      every epoch, logged as target_validation_accuracy: the learning curve. "": none.
    validation_images: evaluate only the validation split's first this many images
      (its shards mix classes); 0: all.
    source_validation_split: a split of the source dataset that the selection never
      samples (e.g. Tiny ImageNet's val when the source is its train split): the
      source head's top-1 on it, over the head's classes, after every epoch, logged as
      source_validation_accuracy. Joint runs only; "": none.
    source_validation_images: evaluate only that split's first this many images; 0: all.
    jit_compile: compile the train step with XLA (model.fit's step, and the custom
      loop's per-replica step); Keras leaves it off under tf.distribute by default.
    strategy: "mirrored" (all local GPUs, else the CPU), "multi_worker" (TF_CONFIG
      cluster, custom loop) or "one_device".
    verbose: Keras progress output (0 silent, 1 bar, 2 a line an epoch).
  """
  output_dir: str
  first_round: str = ""
  target_spec_dir: str = ""
  target_split: str = "train"
  initial_run: str = ""
  fresh_target_head: bool = False
  model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
  optimizer: optimization.OptimizerConfig = dataclasses.field(
      default_factory=optimization.OptimizerConfig)
  pairs: PairConfig = dataclasses.field(default_factory=PairConfig)
  total_steps: int = dataclasses.field(default=1000, metadata={"flag": {"lower_bound": 1}})
  steps_per_epoch: int = dataclasses.field(default=100, metadata={"flag": {"lower_bound": 1}})
  epochs_per_round: int = dataclasses.field(default=0, metadata={"flag": {"lower_bound": 0}})
  target_loss_weight: float = bounds.field(0.5, lower=0.0)
  source_loss_weight: float = bounds.field(0.5, lower=0.0)
  level_rule: levels_lib.LevelRule = dataclasses.field(default_factory=levels_lib.LevelRule)
  l2sp: regularization.L2SPConfig = dataclasses.field(
      default_factory=regularization.L2SPConfig)
  target_batch_norm_for_levels: bool = False
  validation_split: str = ""
  validation_images: int = dataclasses.field(default=0, metadata={"flag": {"lower_bound": 0}})
  source_validation_split: str = ""
  source_validation_images: int = dataclasses.field(default=0,
                                                    metadata={"flag": {"lower_bound": 0}})
  jit_compile: bool = False
  strategy: str = dataclasses.field(default="mirrored",
                                    metadata={"flag": {"enum_values": list(STRATEGIES)}})
  verbose: int = 2

  def __post_init__(self):
    bounds.check(self)
    if self.pairs.crop_size is None:
      self.pairs = dataclasses.replace(self.pairs, crop_size=self.model.input_size)
    elif self.pairs.crop_size != self.model.input_size:
      raise errors.InputError(f"the random crop ({self.pairs.crop_size} px) must be the model's "
                              f"input size ({self.model.input_size} px)")


def target_only(config: TrainConfig, output_dir: str,
                equal_target_images: bool = False) -> TrainConfig:
  """The baseline of a run: plain fine-tuning with its settings on its target alone
  (the first round's target split, or config's), no source, no rounds.

  Args:
    equal_target_images: the batch holds as many images as the joint run's batches
      hold target images (half, at the paper's 1:1), so the baseline sees as many.
  """
  spec_dir, split = config.target_spec_dir, config.target_split
  if config.first_round:
    target = manifest.load(config.first_round).provenance.target
    spec_dir, split = target.spec_dir, target.split
  batch_size = (config.pairs.target_images_per_batch() if equal_target_images
                else config.pairs.batch_size)
  return dataclasses.replace(
      config, output_dir=output_dir, first_round="", target_spec_dir=spec_dir,
      target_split=split, epochs_per_round=0,
      pairs=dataclasses.replace(config.pairs, batch_size=batch_size))


def make_strategy(name: str) -> tf.distribute.Strategy:
  """The tf.distribute strategy called `name` (see TrainConfig.strategy)."""
  if name == "mirrored":
    return tf.distribute.MirroredStrategy()
  if name == "multi_worker":
    return tf.distribute.MultiWorkerMirroredStrategy()
  if name == "one_device":
    gpus = tf.config.list_logical_devices("GPU")
    return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
  raise errors.InputError(f"unknown strategy {name!r}; known: {STRATEGIES}")


def target_only_dataset(spec, split: str, pairs: PairConfig) -> tf.data.Dataset:
  """Plain fine-tuning input: (images [batch, crop, crop, 3], {"target": labels})."""
  reader = pipeline.ReaderConfig(batch_size=pairs.batch_size, resize_size=pairs.resize_size,
                                 crop_size=pairs.crop_size, seed=pairs.seed, repeat=True,
                                 min_crop_area=pairs.min_crop_area,
                                 crop_padding=pairs.crop_padding)
  return pipeline.make_dataset(spec, split, reader, training=True).map(
      lambda batch: (batch["image"], {TARGET_HEAD: batch["label"]}))


def custom_fit(model: keras.Model, strategy: tf.distribute.Strategy, dataset_fn,
               epochs: int, steps_per_epoch: int, callbacks, verbose: int = 2,
               initial_epoch: int = 0, jit_compile: bool = False):
  """model.fit's loop for strategies where Keras' fit fails: `model.train_step` through
  `strategy.run`, the same callbacks (BackupAndRestore included).

  Args:
    dataset_fn: tf.distribute.InputContext -> this input pipeline's dataset, batched
      per replica.
    jit_compile: XLA-compile the per-replica step (strategy.run itself cannot be).
  Returns:
    The History callback.
  """
  history = keras.callbacks.History()
  replica_step = (tf.function(model.train_step, jit_compile=True) if jit_compile
                  else model.train_step)
  callback_list = keras.callbacks.CallbackList(
      list(callbacks) + [history], add_progbar=verbose != 0, model=model,
      verbose=verbose, epochs=epochs, steps=steps_per_epoch)

  @tf.function
  def train_step(iterator):
    per_replica = strategy.run(replica_step, args=(next(iterator),))
    return {name: strategy.reduce("MEAN", value, axis=None)
            for name, value in per_replica.items()}

  callback_list.on_train_begin()
  # BackupAndRestore tells a resumed run where to start through this attribute.
  initial_epoch = getattr(model, "_initial_epoch", None) or initial_epoch
  iterator = None
  for epoch in range(initial_epoch, epochs):
    model.reset_metrics()
    callback_list.on_epoch_begin(epoch)
    if iterator is None:  # after the first epoch's callbacks placed the input
      iterator = iter(strategy.distribute_datasets_from_function(dataset_fn))
    logs = {}
    for step in range(steps_per_epoch):
      callback_list.on_train_batch_begin(step)
      logs = {name: float(value) for name, value in train_step(iterator).items()}
      callback_list.on_train_batch_end(step, logs)
    callback_list.on_epoch_end(epoch, dict(logs))
  callback_list.on_train_end()
  return history


def _worker_output_dir(config: TrainConfig, strategy: tf.distribute.Strategy) -> str:
  """The chief writes to output_dir; other workers of a cluster to output_dir/worker_N
  (every worker saves, TF's collectives need it, but only the chief's files count)."""
  resolver = getattr(strategy, "cluster_resolver", None)
  task_type = getattr(resolver, "task_type", None)
  task_id = getattr(resolver, "task_id", None) or 0
  if task_type in (None, "chief") or (task_type == "worker" and task_id == 0 and
                                       "chief" not in resolver.cluster_spec().as_dict()):
    return config.output_dir
  return os.path.join(config.output_dir, f"{task_type}_{task_id}")


def _inputs_fingerprint(config: TrainConfig) -> str:
  """`files.fingerprint` of what the run trains on: its first selection round, or the
  target split it fine-tunes on alone, and the model it starts from (initial_run)."""
  if config.first_round:
    data = manifest.fingerprint(config.first_round)
  else:
    data = spec_lib.load_spec(config.target_spec_dir).split_fingerprint(config.target_split)
  if not config.initial_run:
    return data
  return files.fingerprint({"data": data, "initial_model": outputs.TrainedRun.read(
      config.initial_run).model_fingerprint()})


def _check_config(config: TrainConfig) -> None:
  """Writes train_config.json (settings, paths relative to the run folder, and the
  inputs' fingerprint), after checking that a saved one matches (`files.matches`).

  Raises:
    ValueError: the run folder holds a run of other settings or other inputs.
  """
  if config.total_steps % config.steps_per_epoch:
    raise errors.InputError(f"total_steps {config.total_steps} is not a multiple of "
                            f"steps_per_epoch {config.steps_per_epoch}")
  if config.epochs_per_round and not config.first_round:
    raise errors.InputError("rounds need a selection: set first_round")
  path = os.path.join(config.output_dir, CONFIG_FILENAME)
  current = {**_portable(dataclasses.asdict(config), config.output_dir),
             files.INPUTS_KEY: _inputs_fingerprint(config)}
  if os.path.exists(path):
    saved = _portable(files.read_json(path, "the run's settings are lost: use a fresh "
                                            "output_dir"), config.output_dir, from_file=True)
    defaults = json.loads(json.dumps(dataclasses.asdict(TrainConfig(config.output_dir))))
    # How much progress is printed is no setting of the run.
    for values in (saved, current, defaults):
      values.pop("verbose", None)
    if saved.get(files.INPUTS_KEY, current[files.INPUTS_KEY]) != current[files.INPUTS_KEY]:
      raise errors.InputError(f"{path}: the run was trained on other inputs (its first round or "
                              f"target images changed since): use a fresh output_dir")
    if not files.matches(saved, current, defaults, _RETIRED_SETTINGS):
      raise errors.InputError(f"{path} holds another configuration: resume with the same one or "
                              f"use a fresh output_dir")
  files.write_json_atomic(path, {**current, "verbose": config.verbose})


_PATH_SETTINGS = ("output_dir", "first_round", "target_spec_dir", "initial_run")
# Settings earlier versions saved that are now implied by others (pairs.max_level: the
# selection's max_level).
_RETIRED_SETTINGS = {"max_level"}


def _portable(settings: dict, run_dir: str, from_file: bool = False) -> dict:
  """The configuration as train_config.json holds it: its paths relative to the run
  folder. Paths of the current configuration are relative to the working directory;
  `from_file`: they were read from the file, relative to run_dir, or, in a file of an
  older version (its output_dir is not "."), as given to that run (absolute or
  relative to the working directory)."""
  settings = json.loads(json.dumps(settings))
  as_given = not from_file or settings.get("output_dir") not in (".", None)
  for key in _PATH_SETTINGS:
    if settings.get(key):
      path = settings[key] if as_given else files.resolve(settings[key], run_dir)
      settings[key] = files.relative_to(path, run_dir)
  return settings


def _check_inputs(config: TrainConfig) -> None:
  """Reads what the run trains on and starts from (its first round, or its target's
  spec; its initial run's model), so a damaged input fails here, naming the file.

  Raises:
    FileNotFoundError, ValueError: naming the missing or damaged file.
  """
  if config.first_round:
    manifest.load(config.first_round)
  else:
    spec_lib.load_spec(config.target_spec_dir).split(config.target_split)
  if config.initial_run:
    initial = outputs.TrainedRun.read(config.initial_run)
    problem = initial.model_problem()
    if problem is not None:
      raise errors.InputError("initial_run: "
                              + outputs.model_problem_message(initial.model_path, problem))


def _finished_run(run_dir: str) -> outputs.TrainedRun | None:
  """The finished run in run_dir when its model is the file training wrote (else None,
  said in one line naming the file: the caller trains the run again). Damage the model
  does not depend on is remade first (`finished.check`).

  Raises:
    ValueError: model.keras is a whole Keras archive other than the one the report
      records (the user's file, never overwritten), or another file of the finished
      run is damaged beyond remaking: named, with the way out.
  """
  report_path = os.path.join(run_dir, REPORT_FILENAME)
  try:
    files.read_json(report_path)
  except errors.InputError:  # (model.keras may well be whole: the report is named)
    logging.warning("%s is damaged: training the run again", report_path)
    return None
  except FileNotFoundError:
    return None
  try:
    run = outputs.TrainedRun.read(run_dir)
  except (FileNotFoundError, ValueError, KeyError, json.JSONDecodeError):
    return None
  problem = run.model_problem()
  if problem == outputs.MODEL_REPLACED:  # the user's file: never overwritten
    raise errors.InputError(outputs.model_problem_message(run.model_path, problem))
  if problem is not None:
    logging.warning("%s is damaged: training the run again", run.model_path)
    return None
  rule = files.read_json(os.path.join(run_dir, CONFIG_FILENAME)).get("level_rule")
  finished.check(run_dir, run.report,
                 finished.run_files(run_dir, MODEL_FILENAME, REPORT_FILENAME),
                 run.first_round, levels_lib.LevelRule(**(rule or {})))
  return run


def _text(path: str) -> str | None:
  """The file's text as written (None: no file)."""
  if not os.path.exists(path):
    return None
  with open(path, newline="") as f:
    return f.read()


def is_finished(run_dir: str) -> bool:
  """Whether run_dir holds a finished run that `train` would reuse as it is."""
  try:
    return _finished_run(run_dir) is not None
  except ValueError:
    return False


def train(config: TrainConfig, extra_callbacks=()) -> dict:
  """Trains (or resumes) the run and returns its report (also in train_report.json).

  A run whose report and model already exist is not trained again (a damaged model,
  not the file its report records, is trained again). Its inputs are read before
  train_config.json is written. Seeds Keras' global random state with
  config.pairs.seed (the initialisation is repeatable).
  Args:
    extra_callbacks: Keras callbacks run after ours (which back up and log first).
  """
  # Over 60 lines: strategy, inputs, model, callbacks, fit and report in one driver; the
  # structure issue (41) splits it into a task (inputs, model, losses) and a runner.
  strategy = make_strategy(config.strategy)
  config = dataclasses.replace(config, output_dir=_worker_output_dir(config, strategy))
  report_path = os.path.join(config.output_dir, REPORT_FILENAME)
  model_path = os.path.join(config.output_dir, MODEL_FILENAME)
  _check_inputs(config)  # before anything is written: a damaged input is named first
  _check_config(config)
  if os.path.exists(report_path) and os.path.exists(model_path):
    earlier = _finished_run(config.output_dir)
    if earlier is not None:
      return earlier.report
    os.remove(report_path)
  files.remove_stale_temporaries(config.output_dir)  # e.g. a model save killed half way
  replicas = strategy.num_replicas_in_sync
  group = config.pairs.group_size if config.first_round else 1
  if config.pairs.batch_size % (group * replicas):
    raise errors.InputError(f"batch_size {config.pairs.batch_size} must be a multiple of "
                            f"{group} x {replicas} replicas (the same mix of domains per replica)")

  run_callbacks, source_classes = [], []
  target_spec_dir = config.target_spec_dir
  if config.first_round:
    sampler = PairSampler(config.first_round, config.pairs)
    target_classes, source_classes = sampler.target_class_names, sampler.source_class_names
    target_spec_dir = sampler.target_spec_dir
    run_callbacks.append(callbacks_lib.SelectiveRounds(
        sampler, os.path.join(config.output_dir, "rounds"), config.epochs_per_round,
        config.level_rule, target_batch_norm=config.target_batch_norm_for_levels))

    def dataset_fn(context=None):
      if context is None:
        return sampler.dataset()
      return sampler.dataset(context.get_per_replica_batch_size(config.pairs.batch_size),
                             context.input_pipeline_id, context.num_input_pipelines)
  else:
    spec = spec_lib.load_spec(config.target_spec_dir)
    target_classes = spec.class_names

    def dataset_fn(context=None):
      dataset = target_only_dataset(spec, config.target_split, config.pairs)
      if context is None:
        return dataset
      return dataset.shard(context.num_input_pipelines, context.input_pipeline_id).rebatch(
          context.get_per_replica_batch_size(config.pairs.batch_size))

  keras.utils.set_random_seed(config.pairs.seed)
  with strategy.scope():
    model = build_joint_model(config.model, len(target_classes), len(source_classes))
    if config.initial_run:
      copy_weights(outputs.TrainedRun.read(config.initial_run).load_model(), model,
                   skip=(TARGET_HEAD,) if config.fresh_target_head else ())
    regularization.apply_l2sp(model, config.l2sp)  # anchored where the run starts
    losses.compile_joint(model, optimization.make_optimizer(config.optimizer,
                                                            config.total_steps),
                         config.target_loss_weight, config.source_loss_weight,
                         jit_compile=config.jit_compile)
  evaluation_reader = pipeline.ReaderConfig(
      batch_size=config.pairs.batch_size, resize_size=config.pairs.resize_size,
      crop_size=config.pairs.crop_size)
  # First, so the loggers below record their numbers.
  if config.source_validation_split and config.first_round:
    source = manifest.load(config.first_round).provenance.source
    if config.source_validation_split in source.splits:
      raise errors.InputError(f"source_validation_split {config.source_validation_split!r} is "
                              f"one the selection draws from ({source.spec_dir}: "
                              f"{list(source.splits)}): hold out another split")
    run_callbacks.insert(0, callbacks_lib.SourceValidation(
        source.spec_dir, config.source_validation_split, source_classes, evaluation_reader,
        config.source_validation_images))
  if config.validation_split:
    run_callbacks.insert(0, callbacks_lib.TargetValidation(
        target_spec_dir, config.validation_split, evaluation_reader,
        config.validation_images))
  backup_dir = os.path.join(config.output_dir, "backup")
  history_path = os.path.join(config.output_dir, "history.csv")
  # The history row of an epoch is written before its backup (resumable.py).
  run_callbacks += [
      resumable.EpochCSVLogger(history_path),
      resumable.AtomicBackupAndRestore(backup_dir, history_path),
      keras.callbacks.TensorBoard(os.path.join(config.output_dir, "logs"),
                                  write_graph=False)] + list(extra_callbacks)
  epochs = config.total_steps // config.steps_per_epoch
  round_epochs = config.epochs_per_round or epochs
  histories = []
  started = time.time()
  # One fit per round, each with a fresh input iterator: the round's pools apply from
  # its first batch exactly (in one long fit, batches prefetched before the switch
  # would still use the old pools), so a resumed run repeats an uninterrupted one.
  for first_epoch in range(0, epochs, round_epochs):
    last_epoch = min(first_epoch + round_epochs, epochs)
    if config.strategy == "multi_worker":
      histories.append(custom_fit(model, strategy, dataset_fn, last_epoch,
                                  config.steps_per_epoch, run_callbacks, config.verbose,
                                  initial_epoch=first_epoch,
                                  jit_compile=config.jit_compile))
    else:
      histories.append(model.fit(dataset_fn(), initial_epoch=first_epoch, epochs=last_epoch,
                                 steps_per_epoch=config.steps_per_epoch,
                                 callbacks=run_callbacks, verbose=config.verbose,
                                 shuffle=False))
  seconds = time.time() - started
  trained_epochs = sum(len(h.epoch) for h in histories)
  # The last epoch's metrics from the history, also when a resumed call had nothing
  # left to train.
  last_row = (resumable.history_rows(history_path) or [{}])[-1]
  last_logs = {k: float(v) for k, v in last_row.items() if k != "epoch" and v not in ("", "NA")}

  with files.atomic_path(model_path, ".keras") as temporary:
    model.save(temporary)
  report = {
      "model_fingerprint": files.fingerprint({}, model_path),
      "target_class_names": list(target_classes),
      "source_class_names": list(source_classes),
      "replicas": replicas,
      "epochs_trained_this_call": trained_epochs,
      "seconds_this_call": round(seconds, 1),
      "images_per_s": round(trained_epochs * config.steps_per_epoch
                            * config.pairs.batch_size / max(seconds, 1e-9), 1),
      "final_epoch_logs": last_logs,
      finished.HISTORY_KEY: _text(history_path),  # remakes a damaged history.csv
  }
  files.write_json_atomic(report_path, report)
  integrity.write_record(config.output_dir, names=finished.run_files(
      config.output_dir, MODEL_FILENAME, REPORT_FILENAME))
  shutil.rmtree(backup_dir, ignore_errors=True)  # the model is saved: nothing to resume
  return report
