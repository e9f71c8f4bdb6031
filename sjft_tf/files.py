"""Atomic file writes: a temporary file in the same folder, renamed when complete, so a
file that exists is a file that is whole (what makes every stage resumable)."""

import json
import os
import re
from typing import Any

import numpy as np


def write_json_atomic(path: str, payload: Any) -> None:
  """Writes `payload` as indented JSON to `path`."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f"{path}.tmp-{os.getpid()}"
  with open(tmp, "w") as f:
    json.dump(payload, f, indent=1)
    f.write("\n")
  os.replace(tmp, path)


def write_text_atomic(path: str, text: str) -> None:
  """Writes `text` to `path`."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f"{path}.tmp-{os.getpid()}"
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, path)


def save_npz_atomic(path: str, **arrays: np.ndarray) -> None:
  """Writes arrays to an uncompressed .npz at `path`."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f"{path}.tmp-{os.getpid()}.npz"
  np.savez(tmp, **arrays)
  os.replace(tmp, path)


def read_versioned_json(path: str, format_version: int, made_by: str) -> dict:
  """Reads a JSON file written with {"format_version": ...}; checks the version.

  Raises:
    FileNotFoundError: no file (the message names the command `made_by` that makes it).
    ValueError: not valid JSON, or another format version.
  """
  if not os.path.exists(path):
    raise FileNotFoundError(f"no {os.path.basename(path)} at {path}: run {made_by} first")
  with open(path) as f:
    try:
      payload = json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f"{path}: not valid JSON ({e})") from e
  if payload.get("format_version") != format_version:
    raise ValueError(f"{path}: format_version {payload.get('format_version')!r}, this "
                     f"sjft_tf reads {format_version}")
  return payload


_TEMPORARY = re.compile(r"\.tmp[-.](\d+)")


def remove_stale_temporaries(directory: str) -> list[str]:
  """Removes the temporary files of writers (the helpers above) that no longer run.

  A name holding ".tmp-<pid>" or ".tmp.<pid>" whose process is gone is what a killed
  write leaves behind. Returns the removed paths.
  """
  removed = []
  if not os.path.isdir(directory):
    return removed
  for name in sorted(os.listdir(directory)):
    match = _TEMPORARY.search(name)
    path = os.path.join(directory, name)
    if not match or not os.path.isfile(path):
      continue
    pid = int(match.group(1))
    try:
      os.kill(pid, 0)
      alive = pid != os.getpid()
    except (ProcessLookupError, PermissionError):
      alive = False
    if not alive:
      os.remove(path)
      removed.append(path)
  return removed
