r"""sjft-benchmark-beam: the descriptor and selection stages in one process against the
same stages as Beam pipelines on the DirectRunner with N worker processes, in one run.

  sjft-benchmark-beam --target_dir=data/flowers102 --source_dir=data/tiny_imagenet_100k \
      --source_splits=train,val --output_dir=runs/benchmark_beam --workers=2

Each stage runs as its own command line (sjft-descriptors, sjft-select), as a user runs
it; the benchmark polls /proc for that process and its descendants and keeps each
one's peak resident memory (VmHWM). It prints, per stage and mode, the wall time,
images per second (target + source images described, or target x source pairs
searched) and the peak memory of the driver and of the largest worker, then checks
that both modes wrote the same descriptors and (exact search) the same neighbours.
Linux only (/proc).
"""

import json
import os
import subprocess
import sys
import threading
import time

import numpy as np
from absl import flags

from sjft_tf import files
from sjft_tf.cli import runner
from sjft_tf.descriptors import store
from sjft_tf.selection import manifest

FLAG_VALUES = flags.FlagValues()
_TARGET_DIR = flags.DEFINE_string("target_dir", None, "Ingested target.", required=True, flag_values=FLAG_VALUES)
_SOURCE_DIR = flags.DEFINE_string("source_dir", None, "Ingested source.", required=True, flag_values=FLAG_VALUES)
_SOURCE_SPLITS = flags.DEFINE_list("source_splits", ["train"], "Source splits described.", flag_values=FLAG_VALUES)
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Folder of both modes' outputs and the report.", required=True, flag_values=FLAG_VALUES)
_WORKERS = flags.DEFINE_integer("workers", 2, "DirectRunner worker processes.", lower_bound=1, flag_values=FLAG_VALUES)
_BANK = flags.DEFINE_enum("bank", "learned", ["learned", "gabor"], "Filter bank.", flag_values=FLAG_VALUES)
_WEIGHTS = flags.DEFINE_string("weights", "imagenet", "Learned bank weights.", flag_values=FLAG_VALUES)
_SIZE = flags.DEFINE_integer("image_size", 64, "resize_size = crop_size, pixels.", flag_values=FLAG_VALUES)
_SEARCH = flags.DEFINE_enum("search", "exact", ["exact", "scann"], "Selection search.", flag_values=FLAG_VALUES)
_MAX_NEIGHBOURS = flags.DEFINE_integer("max_neighbours", 1000, "Neighbours per target.", flag_values=FLAG_VALUES)
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
  and of its largest Beam worker (a descendant running the SDK worker), if any."""
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
  workers = [kib for pid, (kib, cmd) in peaks.items() if "sdk_worker" in cmd]
  driver = peaks.get(process.pid, (0, ""))[0]
  return {"seconds": round(seconds, 1), "driver_peak_mib": round(driver / 1024),
          "worker_peak_mib": round(max(workers) / 1024) if workers else None,
          "worker_processes_seen": len(workers)}


def _tool(name: str) -> str:
  return os.path.join(os.path.dirname(sys.executable), name)


def _beam_flags(mode: str) -> list[str]:
  if mode == "local":
    return []
  return ["--runner=DirectRunner", f"--beam_options=--direct_num_workers={_WORKERS.value},"
          "--direct_running_mode=multi_processing"]


def _same_descriptors(a: str, b: str) -> bool:
  for entry in store.load_metadata(a)["datasets"]:
    for shard in entry["shards"]:
      with np.load(os.path.join(a, shard)) as x, np.load(os.path.join(b, shard)) as y:
        if any(not np.array_equal(x[k], y[k]) for k in x.files):
          return False
  return True


def main(argv):
  del argv
  if os.path.exists(_OUTPUT_DIR.value):
    raise ValueError(f"{_OUTPUT_DIR.value} exists: the benchmark times fresh runs (a "
                     f"rerun of a stage reuses its files); give a new --output_dir")
  report = {"workers": _WORKERS.value, "bank": _BANK.value, "image_size": _SIZE.value,
            "search": _SEARCH.value, "stages": {}}
  for mode in ("local", "beam"):
    folder = os.path.join(_OUTPUT_DIR.value, mode)
    descriptors = run_measured([
        _tool("sjft-descriptors"), f"--target_dir={_TARGET_DIR.value}",
        f"--source_dir={_SOURCE_DIR.value}", f"--source_splits={','.join(_SOURCE_SPLITS.value)}",
        f"--output_dir={folder}/descriptors", f"--bank={_BANK.value}",
        f"--weights={_WEIGHTS.value}", f"--resize_size={_SIZE.value}",
        f"--crop_size={_SIZE.value}", "--noprogress", *_beam_flags(mode)])
    metadata = store.load_metadata(f"{folder}/descriptors")
    images = sum(e["num_examples"] for e in metadata["datasets"])
    descriptors["images"] = images
    descriptors["images_per_second"] = round(images / descriptors["seconds"], 1)
    selection = run_measured([
        _tool("sjft-select"), f"--descriptors_dir={folder}/descriptors",
        f"--output_dir={folder}/selection", f"--search={_SEARCH.value}",
        f"--max_neighbours={_MAX_NEIGHBOURS.value}", "--nowrite_subset", "--noreuse",
        *_beam_flags(mode)])
    chosen = manifest.load(f"{folder}/selection/round_000")
    pairs = len(chosen.target_ids) * len(chosen.source_ids)
    selection["pairs_per_second"] = round(pairs / selection["seconds"])
    selection["sources"] = len(chosen.source_ids)
    report["stages"][mode] = {"descriptors": descriptors, "selection": selection}
    print(f"{mode}: descriptors {descriptors}\n{mode}: selection {selection}", flush=True)
  local, beam = (os.path.join(_OUTPUT_DIR.value, m) for m in ("local", "beam"))
  report["same_descriptors"] = _same_descriptors(f"{local}/descriptors", f"{beam}/descriptors")
  report["same_neighbours"] = bool(np.array_equal(
      manifest.load(f"{local}/selection/round_000").neighbours,
      manifest.load(f"{beam}/selection/round_000").neighbours))
  for stage in ("descriptors", "selection"):
    report[f"{stage}_beam_over_local_speed"] = round(
        report["stages"]["local"][stage]["seconds"] / report["stages"]["beam"][stage]["seconds"], 2)
  files.write_json_atomic(os.path.join(_OUTPUT_DIR.value, "report.json"), report)
  print(json.dumps(report, indent=1))


def run():
  runner.run(main, FLAG_VALUES)


if __name__ == "__main__":
  run()
