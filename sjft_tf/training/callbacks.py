"""Keras callbacks that turn a user's own `model.fit` into selective joint fine-tuning.

    sampler = PairSampler("runs/x/selection/round_000", PairConfig(batch_size=32, crop_size=224))
    model = build_joint_model(ModelConfig(...), len(sampler.target_class_names),
                              len(sampler.source_class_names))
    compile_joint(model, keras.optimizers.SGD(0.01, momentum=0.9))
    model.fit(sampler.dataset(), steps_per_epoch=100, epochs=30, callbacks=[
        SelectiveRounds(sampler, "runs/x/rounds", epochs_per_round=10)])

See examples/selective_fit.py for a runnable script.
"""

import contextlib
import os

from absl import logging
import keras
import numpy as np

from sjft_tf import errors, files
from sjft_tf.data import pipeline
from sjft_tf.selection import levels as levels_lib
from sjft_tf.selection import manifest, select
from sjft_tf.data import spec as spec_lib
from sjft_tf.training import predict
from sjft_tf.training.model import SOURCE_HEAD
from sjft_tf.training.sampler import PairSampler

PREDICTIONS_TEMPLATE = "predictions_after_round_{:03d}.npz"


def _say(message: str) -> None:
  logging.warning(message)
  print(message, flush=True)


def remake_round(rounds_dir: str, round_index: int, previous_folder: str,
                 rule: levels_lib.LevelRule) -> bool:
  """Writes rounds_dir/round_<round_index> again from the predictions that made it
  (rounds_dir/PREDICTIONS_TEMPLATE of the round before) and `previous_folder`, the
  round before: the same bytes (`select.next_round` is a function of them). False,
  writing nothing, when those predictions are missing or damaged."""
  predictions = os.path.join(rounds_dir, PREDICTIONS_TEMPLATE.format(round_index - 1))
  if not files.npz_is_whole(predictions):
    return False
  with np.load(predictions) as saved:
    ids, probabilities = saved["ids"], saved["probabilities"]
  select.next_round(previous_folder, ids, probabilities, rule, rounds_dir, write_subset=False)
  return True


class SelectiveRounds(keras.callbacks.Callback):
  """Iterative hard-sample retrieval (Ge & Yu 2017, section 3.3) inside model.fit.

  Every `epochs_per_round` epochs it predicts the target training images with the
  target head, raises the levels of the misclassified and uncertain ones (LevelRule),
  and switches the sampler to the grown pools: no new search, no new dataset. Round r
  (r >= 1) is written to output_dir/round_NNN with the predictions that made it; a
  resumed fit (BackupAndRestore) reads the rounds already written instead of
  recomputing them, and the sampler continues at the pair where the fit resumes.

  Within one long fit, the batches already prefetched when a round starts (a few)
  still come from the previous round's pools; sjft-train runs one fit per round
  (initial_epoch=first epoch of the round) so that each round's pools apply exactly
  and a resumed run repeats an uninterrupted one.

  Adds to the epoch logs (so History, CSVLogger and TensorBoard record them):
  selection_round, mean_level, mean_pool_size, selected_images.

  Args:
    sampler: the PairSampler whose dataset the fit reads.
    output_dir: where rounds 1, 2, ... go.
    epochs_per_round: a round lasts this many epochs; 0 never starts a new round
      (the pairing and the logs still work: selective joint fine-tuning without
      iteration).
    rule: the level update rule.
    reader: how target images are read for the predictions (evaluation crop); by
      default the sampler's sizes and batch.
    target_batch_norm: predict with batch norm statistics re-estimated on the target
      training images (predict.target_batch_norm; the model is left unchanged), for
      models whose moving averages have not settled, e.g. early from scratch.
  """

  def __init__(self, sampler: PairSampler, output_dir: str, epochs_per_round: int = 0,
               rule: levels_lib.LevelRule = levels_lib.LevelRule(),
               reader: pipeline.ReaderConfig | None = None,
               target_batch_norm: bool = False):
    super().__init__()
    self.target_batch_norm = target_batch_norm
    if rule.max_level > sampler.max_level:
      raise errors.InputError(f"{sampler.first_round_folder}: the level rule's max_level "
                              f"{rule.max_level} exceeds the selection's {sampler.max_level} "
                              f"(sjft-select --max_level)")
    self.sampler = sampler
    self.output_dir = output_dir
    self.epochs_per_round = epochs_per_round
    self.rule = rule
    self.reader = reader or pipeline.ReaderConfig(
        batch_size=sampler.config.batch_size, resize_size=sampler.config.resize_size,
        crop_size=sampler.config.crop_size)
    self._first_round = sampler.round_index
    self._first_folder = sampler.first_round_folder
    self._started = False

  def _round_folder(self, round_index: int, at_round_start: bool = False) -> str:
    """Round `round_index`'s folder, made from the previous round when missing or
    damaged: from the predictions that made it when they are whole, else from the
    model's predictions now, which only `at_round_start` are the ones it was made from.

    Raises:
      InputError: a damaged round whose predictions are damaged too, when the model
        has trained past the round's start: named, with the way out (the run again).
    """
    if round_index == self._first_round:
      return self._first_folder
    folder = manifest.round_dir(self.output_dir, round_index)
    if manifest.round_is_whole(folder):
      return folder
    damaged = os.path.isdir(folder) and any(".tmp" not in n for n in os.listdir(folder))
    previous = self._round_folder(round_index - 1)
    if remake_round(self.output_dir, round_index, previous, self.rule):
      if damaged:
        _say(f"{folder} is damaged: made again from the predictions that made it")
      return folder
    predictions = os.path.join(self.output_dir, PREDICTIONS_TEMPLATE.format(round_index - 1))
    if damaged and not at_round_start:
      raise errors.InputError(
          f"{folder} is damaged and so is {predictions}, the predictions it was made from, "
          f"which the model (trained past that round's start) cannot make again: delete "
          f"{os.path.dirname(self.output_dir)} to train the run again")
    spec_dir, split = self.sampler.target_spec_dir, self.sampler.target_split
    with (predict.target_batch_norm(self.model, spec_dir, split, self.reader)
          if self.target_batch_norm else contextlib.nullcontext()):
      ids, _, probabilities = predict.target_probabilities(self.model, spec_dir, split,
                                                           self.reader)
    files.save_npz_atomic(predictions, ids=ids, probabilities=probabilities)
    select.next_round(previous, ids, probabilities, self.rule, self.output_dir,
                      write_subset=False)
    return folder

  def on_train_begin(self, logs=None):
    self._started = False

  def on_epoch_begin(self, epoch, logs=None):
    if not self._started:
      # Resuming at `epoch`: the pair stream continues where that epoch starts.
      steps = self.params.get("steps") or 0
      self.sampler.start_at(epoch * steps * self.sampler.config.target_images_per_batch())
      self._started = True
    round_index = self._first_round + (epoch // self.epochs_per_round
                                       if self.epochs_per_round else 0)
    if round_index != self.sampler.round_index:
      at_start = not self.epochs_per_round or epoch % self.epochs_per_round == 0
      self.sampler.set_selection(manifest.load(self._round_folder(round_index, at_start)))

  def on_epoch_end(self, epoch, logs=None):
    if logs is not None:
      logs.update(selection_round=float(self.sampler.round_index),
                  mean_level=float(np.mean(self.sampler.levels)),
                  mean_pool_size=float(np.mean(self.sampler.pool_sizes)),
                  selected_images=float(self.sampler.selected_images))


class TargetValidation(keras.callbacks.Callback):
  """Target-head top-1 on a held-out split after every epoch: the learning curve by
  which a training length is chosen (centre crops, inference mode).

  Adds `target_validation_accuracy` to the epoch logs (History, CSVLogger, TensorBoard).

  Args:
    spec_dir, split: the target's validation images (never a split the run trains on).
    reader: evaluation reading (sizes, batch).
    max_images: evaluate the split's first this many images (its shards mix classes);
      0: all of them.
  """

  def __init__(self, spec_dir: str, split: str, reader: pipeline.ReaderConfig,
               max_images: int = 0):
    super().__init__()
    self.spec_dir, self.split, self.reader = spec_dir, split, reader
    self.max_images = max_images

  def on_epoch_end(self, epoch, logs=None):
    _, labels, probabilities = predict.target_probabilities(
        self.model, self.spec_dir, self.split, self.reader, max_images=self.max_images)
    if logs is not None:
      logs["target_validation_accuracy"] = float(np.mean(
          np.argmax(probabilities, axis=1) == labels))


def head_accuracy(probabilities: np.ndarray, dataset_labels: np.ndarray,
                  dataset_class_names, head_class_names) -> tuple[float, int]:
  """Top-1 of a source head on a source split, over the images of the head's classes.

  Args:
    probabilities: float [n, head classes], the head's softmax.
    dataset_labels: int [n], labels of the source dataset (its class_names order).
    dataset_class_names, head_class_names: the dataset's classes and the head's.
  Returns:
    (accuracy, images counted): images of classes outside the head are left out.
  """
  head_index = {name: i for i, name in enumerate(head_class_names)}
  head_labels = np.array([head_index.get(dataset_class_names[label], -1)
                          for label in dataset_labels], np.int64)
  counted = head_labels >= 0
  if not counted.any():
    return float("nan"), 0
  return float(np.mean(np.argmax(probabilities[counted], axis=1) == head_labels[counted])
               ), int(counted.sum())


class SourceValidation(keras.callbacks.Callback):
  """Source-head top-1 on a held-out source split after every epoch: how well the
  network has learned the source (from scratch the source can only help once it is
  learned). Images of source classes outside the head are left out.

  Adds `source_validation_accuracy` to the epoch logs.

  Args:
    spec_dir, split: the source's held-out images (a split the run never samples).
    head_class_names: the source head's classes (PairSampler.source_class_names).
    reader: evaluation reading (sizes, batch).
    max_images: evaluate the split's first this many images; 0: all of them.
  """

  def __init__(self, spec_dir: str, split: str, head_class_names,
               reader: pipeline.ReaderConfig, max_images: int = 0):
    super().__init__()
    self.spec_dir, self.split, self.reader = spec_dir, split, reader
    self.head_class_names = list(head_class_names)
    self.dataset_class_names = spec_lib.load_spec(spec_dir).class_names
    self.max_images = max_images

  def on_epoch_end(self, epoch, logs=None):
    _, labels, probabilities = predict.target_probabilities(
        self.model, self.spec_dir, self.split, self.reader, max_images=self.max_images,
        head=SOURCE_HEAD)
    if logs is not None:
      logs["source_validation_accuracy"] = head_accuracy(
          probabilities, labels, self.dataset_class_names, self.head_class_names)[0]
