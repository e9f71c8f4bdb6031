"""Atomic file writes: a temporary file in the same folder, renamed when complete, so a
file that exists is a file that is whole (what makes every stage resumable)."""

import json
import os
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


def save_npz_atomic(path: str, **arrays: np.ndarray) -> None:
  """Writes arrays to an uncompressed .npz at `path`."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f"{path}.tmp-{os.getpid()}.npz"
  np.savez(tmp, **arrays)
  os.replace(tmp, path)
