"""Keras callbacks that survive SIGKILL at any instruction: the backup and the history.

Keras' BackupAndRestore writes its weights file in place and its epoch file after it, so
a kill inside the write leaves a truncated HDF5 file (every rerun then fails) or new
weights with an old epoch. CSVLogger(append=True) appends the epochs a resumed run
repeats a second time. These subclasses keep Keras' behaviour and fix both:

* AtomicBackupAndRestore writes weights and epoch into a fresh temporary folder, then
  swaps it for `backup/state` with two renames; between them the previous state is
  `backup/state.old`, which a restart takes back. A kill leaves the last complete
  state, never a partial one; stale temporary folders are removed at the next start.
* EpochCSVLogger drops the rows of the epoch about to run and of every later one
  before it appends (a resumed or restarted run repeats them), writes only the keys
  logged (no empty `val_*` columns), and is placed before the backup so any epoch in
  a backup has its row.
"""

import csv
import json
import os
import shutil

import keras

from sjft_tf import files

STATE_DIRNAME = "state"
WEIGHTS_FILENAME = "latest.weights.h5"
METADATA_FILENAME = "training_metadata.json"


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
  """BackupAndRestore (save at every epoch) whose state is replaced atomically."""

  def __init__(self, backup_dir: str):
    super().__init__(backup_dir, save_freq="epoch", delete_checkpoint=False)
    self._state_dir = os.path.join(backup_dir, STATE_DIRNAME)
    self._weights_path = os.path.join(self._state_dir, WEIGHTS_FILENAME)
    self._training_metadata_path = os.path.join(self._state_dir, METADATA_FILENAME)

  def on_train_begin(self, logs=None):
    previous = self._state_dir + ".old"
    if not os.path.isdir(self._state_dir) and os.path.isdir(previous):
      os.replace(previous, self._state_dir)  # killed between the two renames
    if os.path.isdir(self.backup_dir):
      for name in os.listdir(self.backup_dir):
        if name.startswith(".tmp-"):
          shutil.rmtree(os.path.join(self.backup_dir, name), ignore_errors=True)
    super().on_train_begin(logs)

  def _save_model(self):
    temporary = os.path.join(self.backup_dir, f".tmp-{os.getpid()}")
    shutil.rmtree(temporary, ignore_errors=True)
    os.makedirs(temporary)
    self.model.save_weights(os.path.join(temporary, WEIGHTS_FILENAME), overwrite=True)
    with open(os.path.join(temporary, METADATA_FILENAME), "w") as f:
      json.dump({"epoch": self._current_epoch, "batch": self._last_batch_seen}, f)
    previous = self._state_dir + ".old"
    shutil.rmtree(previous, ignore_errors=True)
    if os.path.isdir(self._state_dir):
      os.replace(self._state_dir, previous)
    os.replace(temporary, self._state_dir)
    shutil.rmtree(previous, ignore_errors=True)


def history_rows(path: str) -> list[dict]:
  """The rows of a history.csv (empty when absent)."""
  if not os.path.exists(path):
    return []
  with open(path, newline="") as f:
    return list(csv.DictReader(f))


class EpochCSVLogger(keras.callbacks.CSVLogger):
  """CSVLogger(append=True) with one row per epoch however often the run restarts."""

  def __init__(self, filename: str):
    super().__init__(filename, append=True)
    self._opened = False

  def on_train_begin(self, logs=None):
    self._opened = False  # opened at the first epoch, once its number is known

  def on_epoch_begin(self, epoch, logs=None):
    if self._opened:
      return
    header = []
    if os.path.exists(self.filename):
      with open(self.filename, newline="") as f:
        lines = list(csv.reader(f))
      header, rows = (lines[0], lines[1:]) if lines else ([], [])
      kept = [row for row in rows if int(row[0]) < epoch]
      if len(kept) < len(rows):
        files.write_text_atomic(self.filename, "".join(
            ",".join(row) + "\n" for row in [header] + kept))
    super().on_train_begin()
    if header:
      self.keys = header[1:]  # the file's own columns, in its order
    self._opened = True

  def on_epoch_end(self, epoch, logs=None):
    if self.keys is None:
      self.keys = sorted((logs or {}).keys())  # no invented val_* columns
    super().on_epoch_end(epoch, logs)
