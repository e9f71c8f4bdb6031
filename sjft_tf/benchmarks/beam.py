r"""sjft-benchmark-beam: the descriptor and selection stages in one process against the
same stages as Beam pipelines (the DirectRunner's worker processes, or a Dask
LocalCluster of N worker processes over TCP), in one run.

  sjft-benchmark-beam --target_dir=data/flowers102 --source_dir=data/tiny_imagenet_100k \
      --source_splits=train,val --output_dir=runs/benchmark_beam --modes=local,direct:2
  sjft-benchmark-beam ... --modes=local,dask:1,dask:2   # 1 and 2 Dask workers

Each stage runs as its own command line (sjft-descriptors, sjft-select), as a user runs
it; the benchmark polls /proc for that process and its descendants and keeps each
one's peak resident memory (VmHWM). It prints, per stage and mode, the wall time,
images per second (target + source images described, or target x source pairs
searched) and the peak memory of the driver and of the largest worker, then checks
that both modes wrote the same descriptors and (exact search) the same neighbours.
Linux only (/proc).
"""

import dataclasses
import json
import os
import subprocess
import sys
import threading
import time

import numpy as np
from absl import flags

from sjft_tf import bounds, errors, files
from sjft_tf.cli import config_flags, runner
from sjft_tf.descriptors import store
from sjft_tf.selection import manifest

FLAG_VALUES = flags.FlagValues()


@dataclasses.dataclass
class BeamBenchmarkConfig:
  """The benchmark's settings (each a flag of its name).

  Attributes:
    target_dir, source_dir: the ingested target and source.
    output_dir: folder of both modes' outputs and the report (must not exist).
    source_splits: source splits described.
    modes: what is timed, in order: "local" (one process, no Beam) and
      "RUNNER:N" (RUNNER direct or dask, N worker processes); the first is the
      reference every other mode's ratio and outputs are compared with.
    bank: the filter bank.
    weights: the learned bank's weights.
    image_size: resize_size = crop_size, pixels.
    search: the selection's search.
    max_neighbours: neighbours per target.
  """
  target_dir: str
  source_dir: str
  output_dir: str
  source_splits: tuple[str, ...] = ("train",)
  modes: tuple[str, ...] = ("local", "direct:2")
  bank: str = dataclasses.field(default="learned", metadata={
      "flag": {"enum_values": ["learned", "gabor"]}})
  weights: str = "imagenet"
  image_size: int = bounds.field(64, lower=1)
  search: str = dataclasses.field(default="exact", metadata={
      "flag": {"enum_values": ["exact", "scann"]}})
  max_neighbours: int = bounds.field(1000, lower=1)

  def __post_init__(self):
    bounds.check(self)
    for mode in self.modes:
      _beam_flags(mode)  # refuses a mode it cannot run
    if len(set(self.modes)) != len(self.modes) or len(self.modes) < 2:
      raise errors.InputError(f"modes {list(self.modes)}: give two or more, each once")


_CONFIG = config_flags.define(FLAG_VALUES, BeamBenchmarkConfig,
                              required=("target_dir", "source_dir", "output_dir"))
_POLL_SECONDS = 0.2


def _descendants(root: int) -> list[int]:
  children = {}
  for name in os.listdir("/proc"):
    if name.isdigit():
      try:
        with open(f"/proc/{name}/stat") as f:
          parent = int(f.read().rsplit(")", 1)[1].split()[1])
      except (OSError, IndexError, ValueError):
        continue
      children.setdefault(parent, []).append(int(name))
  found, todo = [], [root]
  while todo:
    pid = todo.pop()
    found.append(pid)
    todo.extend(children.get(pid, []))
  return found


def _peak_kib(pid: int) -> tuple[int, str] | None:
  try:
    with open(f"/proc/{pid}/status") as f:
      peak = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    with open(f"/proc/{pid}/cmdline") as f:
      return peak, f.read().replace("\0", " ")
  except (OSError, StopIteration):
    return None


def run_measured(command: list[str]) -> dict:
  """Runs `command`; returns seconds and the peak memory (MiB) of the process itself
  and of its largest worker (a Python process below it: Beam's SDK workers, Dask's
  workers and nannies), if any."""
  started = time.time()
  process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
  peaks, done = {}, threading.Event()

  def poll():
    while not done.is_set():
      for pid in _descendants(process.pid):
        sample = _peak_kib(pid)
        if sample:
          peaks[pid] = max(sample, peaks.get(pid, (0, "")))
      time.sleep(_POLL_SECONDS)

  watcher = threading.Thread(target=poll, daemon=True)
  watcher.start()
  output = process.communicate()[0]
  done.set()
  watcher.join()
  seconds = time.time() - started
  if process.returncode:
    raise RuntimeError(f"{' '.join(command)} failed:\n{output[-3000:]}")
  # Beam's SDK workers, Dask's nannies and workers: every process below the command.
  workers = [kib for pid, (kib, cmd) in peaks.items() if pid != process.pid and "python" in cmd]
  driver = peaks.get(process.pid, (0, ""))[0]
  return {"seconds": round(seconds, 1), "driver_peak_mib": round(driver / 1024),
          "worker_peak_mib": round(max(workers) / 1024) if workers else None,
          "worker_processes_seen": len(workers)}


def _tool(name: str) -> str:
  return os.path.join(os.path.dirname(sys.executable), name)


def _beam_flags(mode: str) -> list[str]:
  """The stage flags of a mode (BeamBenchmarkConfig.modes)."""
  if mode == "local":
    return []
  runner_name, _, workers = mode.partition(":")
  if runner_name not in ("direct", "dask") or not workers.isdigit() or int(workers) < 1:
    raise errors.InputError(f"mode {mode!r}: give local, direct:N or dask:N (N >= 1 "
                            f"worker processes)")
  if runner_name == "direct":
    return ["--runner=direct", f"--beam_options=--direct_num_workers={workers},"
            "--direct_running_mode=multi_processing"]
  return ["--runner=dask", f"--beam_workers={workers}"]


def _folder(settings: BeamBenchmarkConfig, mode: str) -> str:
  return os.path.join(settings.output_dir, mode.replace(":", "_"))


def _same_descriptors(a: str, b: str) -> bool:
  for entry in store.load_metadata(a)["datasets"]:
    for shard in entry["shards"]:
      with np.load(os.path.join(a, shard)) as x, np.load(os.path.join(b, shard)) as y:
        if any(not np.array_equal(x[k], y[k]) for k in x.files):
          return False
  return True


def main(argv):
  del argv
  settings = _CONFIG()
  if os.path.exists(settings.output_dir):
    raise errors.InputError(f"{settings.output_dir} exists: the benchmark times fresh runs (a "
                            f"rerun of a stage reuses its files); give a new --output_dir")
  report = {"modes": list(settings.modes), "bank": settings.bank,
            "image_size": settings.image_size, "search": settings.search, "stages": {}}
  for mode in settings.modes:
    folder = _folder(settings, mode)
    descriptors = run_measured([
        _tool("sjft-descriptors"), f"--target_dir={settings.target_dir}",
        f"--source_dir={settings.source_dir}", f"--source_splits={','.join(settings.source_splits)}",
        f"--output_dir={folder}/descriptors", f"--bank={settings.bank}",
        f"--weights={settings.weights}", f"--resize_size={settings.image_size}",
        f"--crop_size={settings.image_size}", "--noprogress", *_beam_flags(mode)])
    metadata = store.load_metadata(f"{folder}/descriptors")
    images = sum(e["num_examples"] for e in metadata["datasets"])
    descriptors["images"] = images
    descriptors["images_per_second"] = round(images / descriptors["seconds"], 1)
    selection = run_measured([
        _tool("sjft-select"), f"--descriptors_dir={folder}/descriptors",
        f"--output_dir={folder}/selection", f"--search={settings.search}",
        f"--max_neighbours={settings.max_neighbours}", "--nowrite_subset", "--noreuse",
        *_beam_flags(mode)])
    chosen = manifest.load(f"{folder}/selection/round_000")
    pairs = len(chosen.target_ids) * len(chosen.source_ids)
    selection["pairs_per_second"] = round(pairs / selection["seconds"])
    selection["sources"] = len(chosen.source_ids)
    report["stages"][mode] = {"descriptors": descriptors, "selection": selection}
    print(f"{mode}: descriptors {descriptors}\n{mode}: selection {selection}", flush=True)
  reference, stages = settings.modes[0], report["stages"]
  first = _folder(settings, reference)
  for mode in settings.modes[1:]:
    folder = _folder(settings, mode)
    report[mode] = {
        "same_descriptors": _same_descriptors(f"{first}/descriptors", f"{folder}/descriptors"),
        "same_neighbours": bool(np.array_equal(
            manifest.load(f"{first}/selection/round_000").neighbours,
            manifest.load(f"{folder}/selection/round_000").neighbours)),
        **{f"{stage}_speed_over_{reference}": round(
            stages[reference][stage]["seconds"] / stages[mode][stage]["seconds"], 2)
           for stage in ("descriptors", "selection")}}
  files.write_json_atomic(os.path.join(settings.output_dir, "report.json"), report)
  print(json.dumps(report, indent=1))


def run():
  runner.run(main, FLAG_VALUES)


if __name__ == "__main__":
  run()
