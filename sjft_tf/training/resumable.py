"""Keras callbacks that survive SIGKILL at any instruction: the backup and the history.

Keras' BackupAndRestore writes its weights file in place and its epoch file after it, so
a kill inside the write leaves a truncated HDF5 file (every rerun then fails) or new
weights with an old epoch. CSVLogger(append=True) appends the epochs a resumed run
repeats a second time. These subclasses keep Keras' behaviour and fix both:

* AtomicBackupAndRestore writes weights and epoch into a fresh temporary folder, then
  swaps it for `backup/state` with two renames; between them the previous state is
  `backup/state.old`, which a restart takes back. A kill leaves the last complete
  state, never a partial one; stale temporary folders are removed at the next start.
* Each state holds a copy of history.csv as of its epoch and, written last, a record
  of its files (integrity.py). A restart verifies the state first: a damaged one (cut,
  emptied or overwritten weights or metadata) is dropped with one line saying so and
  the run trains from the beginning; a whole one restores the weights and rewrites
  history.csv from its copy (a cut history is never appended to).
* EpochCSVLogger drops the rows of the epoch about to run and of every later one
  before it appends (a resumed or restarted run repeats them), and any row that is
  not whole (a cut last line); writes only the keys logged (no empty `val_*`
  columns), with Keras' line ends throughout, and is placed before the backup so any
  epoch in a backup has its row.
"""

import csv
import json
import os
import shutil

import keras
from absl import logging

from sjft_tf import files, integrity

STATE_DIRNAME = "state"
WEIGHTS_FILENAME = "latest.weights.h5"
METADATA_FILENAME = "training_metadata.json"
HISTORY_FILENAME = "history.csv"


def state_problem(state_dir: str) -> str | None:
  """Why a backup state cannot be restored (one line naming the file), or None.

  A state with a file record (integrity.py) is checked against it; one of an earlier
  version without a record by parsing its metadata and reading every weight array.
  """
  try:
    integrity.verify(state_dir, "")
    return None
  except FileNotFoundError:
    pass  # a state of an earlier version: read it
  except ValueError as error:
    return str(error)
  metadata = os.path.join(state_dir, METADATA_FILENAME)
  try:
    epoch = files.read_json(metadata).get("epoch")
    if not isinstance(epoch, int):
      return f"{metadata} is damaged (no epoch)"
  except (FileNotFoundError, ValueError, AttributeError) as error:
    return str(error)
  weights = os.path.join(state_dir, WEIGHTS_FILENAME)
  try:
    import h5py  # pylint: disable=g-import-not-at-top
    with h5py.File(weights, "r") as f:
      f.visititems(lambda name, item: item[()] if isinstance(item, h5py.Dataset) else None)
  except (OSError, ValueError, KeyError) as error:
    return f"{weights} is damaged ({' '.join(str(error).split())[:120]})"
  return None


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
  """BackupAndRestore (save at every epoch) whose state is replaced atomically, and
  verified before it is restored (module docstring).

  Args:
    backup_dir: the run's backup folder.
    history_path: the run's history.csv, copied into each state and restored from it.
  """

  def __init__(self, backup_dir: str, history_path: str | None = None):
    super().__init__(backup_dir, save_freq="epoch", delete_checkpoint=False)
    self._state_dir = os.path.join(backup_dir, STATE_DIRNAME)
    self._weights_path = os.path.join(self._state_dir, WEIGHTS_FILENAME)
    self._training_metadata_path = os.path.join(self._state_dir, METADATA_FILENAME)
    self._history_path = history_path

  def on_train_begin(self, logs=None):
    previous = self._state_dir + ".old"
    if not os.path.isdir(self._state_dir) and os.path.isdir(previous):
      os.replace(previous, self._state_dir)  # killed between the two renames
    if os.path.isdir(self.backup_dir):
      for name in os.listdir(self.backup_dir):
        if name.startswith(".tmp-"):
          shutil.rmtree(os.path.join(self.backup_dir, name), ignore_errors=True)
    if os.path.isdir(self._state_dir):
      problem = state_problem(self._state_dir)
      if problem is not None:
        message = f"{problem}: the backup is dropped and the run trains from the beginning"
        logging.warning(message)
        print(message, flush=True)
        shutil.rmtree(self._state_dir)
        if self._history_path and os.path.exists(self._history_path):
          os.remove(self._history_path)  # its epochs are trained again
      elif self._history_path:
        copy = os.path.join(self._state_dir, HISTORY_FILENAME)
        if os.path.exists(copy):  # the history as of the state's epoch, whole
          with open(copy, newline="") as f:
            files.write_text_atomic(self._history_path, f.read(), newline="")
    super().on_train_begin(logs)

  def _save_model(self):
    temporary = os.path.join(self.backup_dir, f".tmp-{os.getpid()}")
    shutil.rmtree(temporary, ignore_errors=True)
    os.makedirs(temporary)
    self.model.save_weights(os.path.join(temporary, WEIGHTS_FILENAME), overwrite=True)
    with open(os.path.join(temporary, METADATA_FILENAME), "w") as f:
      json.dump({"epoch": self._current_epoch, "batch": self._last_batch_seen}, f)
    if self._history_path and os.path.exists(self._history_path):
      shutil.copyfile(self._history_path, os.path.join(temporary, HISTORY_FILENAME))
    integrity.write_record(temporary)  # last: a state with a record is whole
    previous = self._state_dir + ".old"
    shutil.rmtree(previous, ignore_errors=True)
    if os.path.isdir(self._state_dir):
      os.replace(self._state_dir, previous)
    os.replace(temporary, self._state_dir)
    shutil.rmtree(previous, ignore_errors=True)


def history_rows(path: str) -> list[dict]:
  """The whole rows of a history.csv (empty when absent; a cut row is left out)."""
  if not os.path.exists(path):
    return []
  header, rows = _whole_rows(path)
  return [dict(zip(header, row)) for row in rows]


def _whole_rows(path: str) -> tuple[list[str], list[list[str]]]:
  """(header, rows) of a history.csv: rows of the header's length that end in a line
  break, with consecutive epochs from 0 (what follows a gap or a cut row is dropped)."""
  with open(path, newline="") as f:
    text = f.read()
  lines = text.splitlines(keepends=True)
  if not lines or not lines[0].endswith("\n"):
    return [], []
  header = next(csv.reader([lines[0]]))
  rows = []
  for line in lines[1:]:
    row = next(csv.reader([line]), [])
    if not line.endswith("\n") or len(row) != len(header) or row[0] != str(len(rows)):
      break
    rows.append(row)
  return header, rows


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
      header, rows = _whole_rows(self.filename)
      kept = rows[:epoch]
      with open(self.filename, newline="") as f:
        whole = f.read() == _csv_text([header] + kept if header else [])
      if not whole:  # later epochs, a cut row or another line end: rewritten
        files.write_text_atomic(self.filename, _csv_text([header] + kept if header else []),
                                newline="")
    super().on_train_begin()
    if header:
      self.keys = header[1:]  # the file's own columns, in its order
    self._opened = True

  def on_epoch_end(self, epoch, logs=None):
    if self.keys is None:
      self.keys = sorted((logs or {}).keys())  # no invented val_* columns
    super().on_epoch_end(epoch, logs)


def _csv_text(rows: list[list[str]]) -> str:
  """Rows as CSVLogger writes them (csv's default dialect: "\\r\\n" line ends)."""
  import io  # pylint: disable=g-import-not-at-top
  buffer = io.StringIO(newline="")
  csv.writer(buffer).writerows(rows)
  return buffer.getvalue()
