"""Runs pipeline stages as their own command lines (one process each, as a user would),
timed; for the tools that chain stages (sjft-run, sjft-reproduce)."""

import os
import subprocess
import sys
import time

from absl import logging


def run_stage(tool: str, *flags_and_args: str) -> float:
  """Runs the console script `tool` (e.g. "sjft-ingest") with its flags; returns seconds.

  Raises:
    RuntimeError: the stage failed (its output is in the log above).
  """
  command = [os.path.join(os.path.dirname(sys.executable), tool), *flags_and_args]
  logging.info("stage: %s", " ".join(command))
  started = time.time()
  done = subprocess.run(command)
  if done.returncode:
    raise RuntimeError(f"stage failed (exit {done.returncode}): {' '.join(command)}")
  return time.time() - started
