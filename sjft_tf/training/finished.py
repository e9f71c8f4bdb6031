"""A finished run's files against its record (integrity.py), before the run is reused.

The model is checked first, against the fingerprint its report records (outputs.
TrainedRun.model_problem). Damage the model does not depend on is then remade from what
is whole and said in one line, not answered with "delete the run":
  history.csv                     from the report's copy of it
  rounds/round_NNN/* (later ones)  from the predictions that made the round (the same
                                  bytes: `callbacks.remake_round`)
  rounds/predictions_after_*.npz  dropped from the run: the final model cannot compute
                                  them again, and the round they made is whole
  sjft_files.json (the record)    written again from the files, once the model matches
                                  its report and the history its copy
Anything else (or a round whose predictions are damaged too) is named, with the one way
out: delete the run folder and train it again.
"""

import os
import re

from absl import logging

from sjft_tf import errors, files, integrity
from sjft_tf.selection import levels as levels_lib
from sjft_tf.selection import manifest
from sjft_tf.training import callbacks as callbacks_lib

HISTORY_FILENAME = "history.csv"
HISTORY_KEY = "history_csv"  # the report's copy of history.csv (text, as written)
_ROUND_FILE = re.compile(r"rounds/round_(\d+)/")
_PREDICTIONS = re.compile(r"rounds/predictions_after_round_\d+\.npz$")


def run_files(run_dir: str, model_filename: str, report_filename: str) -> list[str]:
  """The files a finished run keeps, relative to run_dir: its model, report, history
  and every round's files (recorded last, verified on reuse)."""
  names = [model_filename, report_filename, HISTORY_FILENAME]
  rounds = os.path.join(run_dir, "rounds")
  for folder, _, filenames in os.walk(rounds):
    names += [os.path.relpath(os.path.join(folder, n), run_dir) for n in filenames
              if ".tmp" not in n]
  return [n for n in names if os.path.isfile(os.path.join(run_dir, n))]


def _say(message: str) -> None:
  logging.warning(message)
  print(message, flush=True)


def _refuse(run_dir: str, problem: str) -> errors.InputError:
  return errors.InputError(f"the finished run in {run_dir} has a damaged file, {problem}: "
                           f"delete {run_dir} to train the run again")


def _history_matches(run_dir: str, report: dict) -> bool | None:
  """Whether history.csv is the report's copy (None: the report holds none)."""
  if report.get(HISTORY_KEY) is None:
    return None
  path = os.path.join(run_dir, HISTORY_FILENAME)
  try:
    with open(path, newline="") as f:
      return f.read() == report[HISTORY_KEY]
  except (OSError, UnicodeDecodeError):
    return False


def _remake_history(run_dir: str, report: dict) -> None:
  files.write_text_atomic(os.path.join(run_dir, HISTORY_FILENAME), report[HISTORY_KEY],
                          newline="")


def _remake_rounds(run_dir: str, indices: list[int], first_round: str,
                   rule: levels_lib.LevelRule) -> None:
  rounds_dir = os.path.join(run_dir, "rounds")
  first_index = manifest.load(first_round).round_index
  for index in sorted(indices):
    previous = first_round if index - 1 == first_index else manifest.round_dir(
        rounds_dir, index - 1)
    if not callbacks_lib.remake_round(rounds_dir, index, previous, rule):
      predictions = os.path.join(rounds_dir,
                                 callbacks_lib.PREDICTIONS_TEMPLATE.format(index - 1))
      raise _refuse(run_dir, f"{manifest.round_dir(rounds_dir, index)}, and the predictions "
                    f"it was made from ({predictions}) are damaged or gone")


def check(run_dir: str, report: dict, names: list[str], first_round: str | None,
          rule: levels_lib.LevelRule) -> None:
  """Makes the finished run in run_dir whole again where its model does not depend on
  the damage (module docstring), rewriting its record; a run without a record (never
  finished by this version) is left as it is.

  Args:
    report: the run's train report (its model already matches it).
    names: the files the run's record should list (`run_files`).
    first_round: the round the run started from (None: target only).
    rule: the run's level rule (to remake later rounds).
  Raises:
    InputError: a damaged file that cannot be remade, named with the way out.
  """
  record = os.path.join(run_dir, integrity.RECORD_FILENAME)
  try:
    damaged = integrity.damaged_names(run_dir)
  except FileNotFoundError:
    return
  except ValueError as error:  # the record itself: the files are checked without it
    if _history_matches(run_dir, report) is False:
      _remake_history(run_dir, report)
    integrity.write_record(run_dir, names=names)
    _say(f"{error}: made again from the run's files (its model is the one its report "
         f"records)")
    return
  if not damaged:
    return
  rounds, dropped, said = set(), [], []
  for name, why in damaged.items():
    path = os.path.join(run_dir, name)
    matched = _ROUND_FILE.match(name.replace(os.sep, "/"))
    if name == HISTORY_FILENAME and report.get(HISTORY_KEY) is not None:
      _remake_history(run_dir, report)
      said.append(f"{path} is damaged ({why}): made again from the run's report")
    elif matched and first_round:
      rounds.add(int(matched.group(1)))
      said.append(f"{path} is damaged ({why}): its round is made again from the "
                  f"predictions that made it")
    elif _PREDICTIONS.match(name.replace(os.sep, "/")):
      dropped.append(path)
      said.append(f"{path} is damaged ({why}): removed (the final model cannot make the "
                  f"predictions of that epoch again; the round they made is whole)")
    else:
      raise _refuse(run_dir, f"{path} ({why})")
  _remake_rounds(run_dir, sorted(rounds), first_round, rule)
  for path in dropped:
    if os.path.exists(path):
      os.remove(path)
  names = [n for n in names if os.path.exists(os.path.join(run_dir, n))]
  still = {n: why for n, why in integrity.damaged_names(run_dir).items()
           if n in names}
  if still:  # remade, yet not the recorded bytes
    name, why = next(iter(still.items()))
    raise _refuse(run_dir, f"{os.path.join(run_dir, name)} ({why})")
  integrity.write_record(run_dir, record, names=names)
  for line in said:
    _say(line)
