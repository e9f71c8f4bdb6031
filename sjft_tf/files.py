"""Atomic file writes: a temporary file in the same folder, renamed when complete, so a
file that exists is a file that is whole (what makes every stage resumable)."""

import contextlib
import hashlib
import json
import os
import re
import zipfile
from collections.abc import Iterator
from typing import Any

import numpy as np
from absl import logging

from sjft_tf import errors


@contextlib.contextmanager
def atomic_path(path: str, suffix: str = "") -> Iterator[str]:
  """Yields a temporary name beside `path` to write; renames it to `path` on success.

  The name is "<path>.tmp-<pid><suffix>" (`suffix` for writers that need an extension,
  e.g. ".png", ".keras"), which `remove_stale_temporaries` recognises once its writer is
  gone. On an exception the temporary file is removed and `path` is left as it was.
  """
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  temporary = f"{path}.tmp-{os.getpid()}{suffix}"
  try:
    yield temporary
  except BaseException:
    if os.path.isfile(temporary):
      os.remove(temporary)
    raise
  os.replace(temporary, path)


def write_json_atomic(path: str, payload: Any) -> None:
  """Writes `payload` as indented JSON to `path`."""
  write_text_atomic(path, json.dumps(payload, indent=1) + "\n")


def write_text_atomic(path: str, text: str, newline: str | None = None) -> None:
  """Writes `text` to `path` (`newline` as open()'s: "" writes line ends as they are)."""
  with atomic_path(path) as temporary, open(temporary, "w", newline=newline) as f:
    f.write(text)


def save_npz_atomic(path: str, **arrays: np.ndarray) -> None:
  """Writes arrays to an uncompressed .npz at `path`."""
  with atomic_path(path, ".npz") as temporary:
    np.savez(temporary, **arrays)


def pyplot():
  """matplotlib.pyplot on the Agg backend (no display needed), imported on first use."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def save_figure_atomic(figure, path: str, dpi: int = 120) -> None:
  """Saves a matplotlib figure as PNG at `path` and closes it."""
  with atomic_path(path, ".png") as temporary:
    figure.savefig(temporary, dpi=dpi)
  pyplot().close(figure)


def relative_to(path: str | None, folder: str) -> str | None:
  """`path` as stored in a file of `folder`: relative to that folder, so a tree of data
  and runs moved or copied as a whole keeps working. Empty and None stay as they are."""
  if not path:
    return path
  return os.path.relpath(os.path.abspath(path), os.path.abspath(folder))


def resolve(path: str | None, folder: str) -> str | None:
  """A path read from a file of `folder` (relative to it, or absolute as older versions
  wrote), as a normalised path usable from the current directory."""
  if not path:
    return path
  return os.path.normpath(os.path.join(folder, path))


def read_json(path: str, remedy: str = "") -> Any:
  """The JSON in `path`.

  Raises:
    FileNotFoundError: no file.
    ValueError: naming the file, when it is not valid JSON (e.g. truncated); `remedy`
      says what to do about it.
  """
  try:
    with open(path) as f:
      return json.load(f)
  except (json.JSONDecodeError, UnicodeDecodeError) as error:
    raise errors.InputError(f"{path} is damaged (not valid JSON: {error})"
                            + (f"; {remedy}" if remedy else "")) from error


def read_versioned_json(path: str, format_version: int, made_by: str) -> dict:
  """Reads a JSON file written with {"format_version": ...}; checks the version.

  Raises:
    FileNotFoundError: no file (the message names the command `made_by` that makes it).
    ValueError: not valid JSON, or another format version.
  """
  if not os.path.exists(path):
    raise errors.MissingInputError(f"no {os.path.basename(path)} at {path}: run {made_by} first")
  payload = read_json(path, f"run {made_by} again with the same flags")
  if not isinstance(payload, dict):
    raise errors.InputError(f"{path} is damaged (not a JSON object): run {made_by} again with "
                            f"the same flags")
  if payload.get("format_version") != format_version:
    raise errors.InputError(f"{path}: format_version {payload.get('format_version')!r}, this "
                            f"sjft_tf reads {format_version}")
  return payload


def load_npz(path: str, remedy: str) -> dict[str, np.ndarray]:
  """Every array of an .npz file, read in full (a truncated or damaged file fails its
  zip checks here, not later).

  Args:
    remedy: what the user does about a damaged file, for the message.
  Raises:
    FileNotFoundError: no file.
    ValueError: naming the file, when it is not a whole .npz.
  """
  if not os.path.exists(path):
    raise errors.MissingInputError(f"no {os.path.basename(path)} at {path}: {remedy}")
  try:
    with np.load(path, allow_pickle=False) as data:
      return {key: data[key] for key in data.files}
  except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as error:
    raise errors.InputError(
        f"{path} is damaged ({type(error).__name__}: {error}); {remedy}") from error


def npz_is_whole(path: str) -> bool:
  """Whether `path` exists and reads as a whole .npz (`load_npz`)."""
  try:
    load_npz(path, "")
    return True
  except (FileNotFoundError, ValueError):
    return False


def npz_made_from(path: str, inputs: str, remedy: str) -> dict[str, np.ndarray] | None:
  """The arrays of an .npz written (before a kill, or by an earlier call) from `inputs`
  (a `fingerprint`, stored under INPUTS_KEY), else None: absent, damaged, or made from
  other inputs (the last two named in a warning ending in `remedy`)."""
  try:
    data = load_npz(path, remedy)
  except FileNotFoundError:
    return None
  except ValueError as error:
    logging.warning("%s", error)
    return None
  if str(data.get(INPUTS_KEY, "")) != str(inputs):
    logging.warning("%s was made from other inputs: %s", path, remedy)
    return None
  return data


_TEMPORARY = re.compile(r"\.tmp[-.](\d+)")


def remove_stale_temporaries(directory: str) -> list[str]:
  """Removes the temporary files of writers (the helpers above) that no longer run, in
  `directory` and every folder below it (a stage writes into subfolders too).

  A name holding ".tmp-<pid>" or ".tmp.<pid>" whose process is gone is what a killed
  write leaves behind. Returns the removed paths.
  """
  removed = []
  if not os.path.isdir(directory):
    return removed
  for folder, _, names in sorted(os.walk(directory)):
    for name in sorted(names):
      match = _TEMPORARY.search(name)
      if not match:
        continue
      pid = int(match.group(1))
      try:
        os.kill(pid, 0)
        alive = pid != os.getpid()
      except (ProcessLookupError, PermissionError):
        alive = False
      if not alive:
        path = os.path.join(folder, name)
        os.remove(path)
        removed.append(path)
  return removed


def hash_file_into(digest, path: str):
  """Feeds the bytes of the file `path` to `digest` (a hashlib object), 1 MiB at a
  time; returns digest."""
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest


def fingerprint(settings, *paths: str) -> str:
  """SHA-1 (hex) of `settings` (canonical JSON) and the bytes of the files `paths`:
  what identifies the inputs of a stage output (see `matches`)."""
  digest = hashlib.sha1(json.dumps(settings, sort_keys=True).encode())
  for path in paths:
    hash_file_into(digest, path)
  return digest.hexdigest()


INPUTS_KEY = "inputs"


def matches(saved: dict, current: dict, defaults: dict | None = None,
            retired=frozenset()) -> bool:
  """The freshness rule of stage outputs: whether the record stored with an output (its
  settings, and under INPUTS_KEY the `fingerprint` of its inputs) is the current one;
  the output is reused only then, else refused or made again.

  A key the saved record lacks was added to sjft_tf after it was written: it counts as
  equal when the current value is its default (`defaults`, nested like the records),
  and an input fingerprint counts as equal (older outputs are trusted), so outputs of
  earlier versions are still reused. Keys only the saved record holds must be in
  `retired` (settings since implied by others).
  """
  defaults = defaults or {}
  for key, value in current.items():
    if key not in saved:
      if key != INPUTS_KEY and value != defaults.get(key):
        return False
    elif isinstance(value, dict) and isinstance(saved[key], dict):
      if not matches(saved[key], value, defaults.get(key), retired):
        return False
    elif saved[key] != value:
      return False
  return not set(saved) - set(current) - set(retired)
