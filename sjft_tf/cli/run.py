r"""sjft-run: the whole method as one command: (demo data ->) ingest -> descriptors ->
selection -> joint training rounds -> evaluation -> export, plus the target-only
baseline, then a JSON report and a short summary.

  sjft-run --flagfile=flags/run/demo.flags      # what `make demo` runs
Every stage is its own command line with its own flag file (--<stage>_flagfile), run
as a user would run it; each reuses its output when complete, so a rerun resumes.
Writes <output_dir>/run_report.json and <output_dir>/run_summary.txt.
"""

import json
import os

import numpy as np
from absl import flags

from sjft_tf import files
from sjft_tf.data import spec as spec_lib
from sjft_tf.evaluation import evaluate
from sjft_tf.export import serving
from sjft_tf.selection import manifest
from sjft_tf.cli import runner, stages

_OUTPUT_DIR = flags.DEFINE_string("output_dir", "runs/demo", "Where the report goes.")
_DEMO_DATA = flags.DEFINE_string("demo_data_flagfile", "", "sjft-make-demo-data flag file (empty: bring your own data).")
_INGEST = flags.DEFINE_list("ingest_flagfiles", [], "sjft-ingest flag files, one per dataset.")
_DESCRIPTORS = flags.DEFINE_string("descriptors_flagfile", None, "sjft-descriptors flag file.", required=True)
_SELECT = flags.DEFINE_string("select_flagfile", None, "sjft-select flag file (round 0).", required=True)
_TRAIN = flags.DEFINE_string("train_flagfile", None, "sjft-train flag file.", required=True)
_EVAL = flags.DEFINE_string("eval_flagfile", None, "sjft-eval flag file (its --run_dir is the training run).", required=True)
_EXPORT = flags.DEFINE_string("export_flagfile", "", "sjft-export flag file (empty: no export).")
_BASELINE = flags.DEFINE_bool("baseline", True, "Also train and evaluate fine-tuning on the target alone, same flags otherwise.")


def read_flagfile(path: str) -> dict[str, str]:
  """--name=value lines of an absl flag file (nested --flagfile included, later wins)."""
  values = {}
  with open(path) as f:
    for line in f:
      line = line.strip()
      if not line.startswith("--"):
        continue
      name, _, value = line[2:].partition("=")
      if name == "flagfile":
        values.update(read_flagfile(value))
      else:
        values[name] = value
  return values


def _related_share(selection: manifest.Selection, target_spec_dir: str) -> dict | None:
  """How many selected images belong to source classes the generator related to the
  target (embedded demo data only: its spec records them)."""
  related = spec_lib.load_spec(target_spec_dir).metadata.get("related_source_classes")
  if not related:
    return None
  related_names = {name for names in related.values() for name in names}
  related_ids = [i for i, name in enumerate(selection.source_class_names)
                 if name in related_names]
  in_related = np.isin(selection.source_labels, related_ids)
  return {"selected_images": int(len(selection.selected)),
          "from_related_classes": int(in_related[selection.selected].sum()),
          "share": float(in_related[selection.selected].mean()) if len(selection.selected) else 0.0,
          "share_by_chance": float(in_related.mean())}


def _accuracy(run_dir: str, split: str) -> dict:
  with open(evaluate.result_paths(run_dir, split)[0]) as f:
    views = json.load(f)["views"]
  return {view: {"top1": r["top1"], "mean_per_class_accuracy": r["mean_per_class_accuracy"]}
          for view, r in views.items()}


def _last_round(run_dir: str, first_round: str) -> str:
  rounds_dir = os.path.join(run_dir, "rounds")
  later = sorted(n for n in os.listdir(rounds_dir) if n.startswith("round_")) if (
      os.path.isdir(rounds_dir)) else []
  return os.path.join(rounds_dir, later[-1]) if later else first_round


def summary(report: dict) -> str:
  lines = [f"sjft-run: {report['target']} <- {report['source']}"]
  for name in ("selective", "target_only"):
    if name in report["accuracy"]:
      lines.append(f"  {name:11s} " + ", ".join(
          f"{view} top-1 {r['top1']:.3f}" for view, r in report["accuracy"][name].items()))
  selection = report["selection"]
  lines.append(f"  selected source images: {selection['round_0']['selected_images']} in round 0, "
               f"{selection['last_round']['selected_images']} in the last round")
  if selection["last_round"].get("level_predictions_accuracy") is not None:
    lines.append(f"  the last round's levels came from predictions of "
                 f"{selection['last_round']['level_predictions_accuracy']:.0%} training accuracy")
  related = selection["round_0"].get("related")
  if related:
    lines.append(f"  from the related source classes: {related['from_related_classes']} "
                 f"({related['share']:.0%}; by chance {related['share_by_chance']:.0%})")
  lines.append("  seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in report["seconds"].items()))
  if report.get("export"):
    lines.append(f"  exported to {report['export']}")
  return "\n".join(lines)


def main(argv):
  del argv
  seconds = {}
  if _DEMO_DATA.value:
    seconds["demo data"] = stages.run_stage("sjft-make-demo-data", f"--flagfile={_DEMO_DATA.value}")
  for i, flagfile in enumerate(_INGEST.value):
    seconds[f"ingest {i}"] = stages.run_stage("sjft-ingest", f"--flagfile={flagfile}")
  seconds["descriptors"] = stages.run_stage("sjft-descriptors", f"--flagfile={_DESCRIPTORS.value}")
  seconds["selection"] = stages.run_stage("sjft-select", f"--flagfile={_SELECT.value}")
  seconds["training"] = stages.run_stage("sjft-train", f"--flagfile={_TRAIN.value}")
  seconds["evaluation"] = stages.run_stage("sjft-eval", f"--flagfile={_EVAL.value}")

  train_flags, eval_flags = read_flagfile(_TRAIN.value), read_flagfile(_EVAL.value)
  run_dir, split = train_flags["output_dir"], eval_flags.get("split", "test")
  first_round = train_flags["first_round"]
  first = manifest.load(first_round)
  target_spec_dir = first.info["target"]["spec_dir"]
  accuracy = {"selective": _accuracy(run_dir, split)}
  if _BASELINE.value:
    baseline_dir = f"{run_dir}_target_only"
    seconds["baseline training"] = stages.run_stage(
        "sjft-train", f"--flagfile={_TRAIN.value}", "--first_round=",
        f"--target_spec_dir={target_spec_dir}", f"--output_dir={baseline_dir}",
        "--epochs_per_round=0")
    seconds["baseline evaluation"] = stages.run_stage(
        "sjft-eval", f"--flagfile={_EVAL.value}", f"--run_dir={baseline_dir}")
    accuracy["target_only"] = _accuracy(baseline_dir, split)
  export_path = None
  if _EXPORT.value:
    export_dir = read_flagfile(_EXPORT.value)["export_dir"]
    model_time = os.path.getmtime(os.path.join(run_dir, "model.keras"))
    done = [n for n in (os.listdir(export_dir) if os.path.isdir(export_dir) else [])
            if n.isdigit() and os.path.getmtime(os.path.join(export_dir, n)) >= model_time]
    if not done:  # else a version newer than the model is there: reuse it
      seconds["export"] = stages.run_stage("sjft-export", f"--flagfile={_EXPORT.value}")
    export_path = os.path.join(export_dir, str(serving.next_version(export_dir) - 1))
  last_round = _last_round(run_dir, first_round)
  last = manifest.load(last_round) if last_round != first_round else first
  report = {
      "target": first.info["target"]["dataset"], "source": first.info["source"]["dataset"],
      "split": split, "accuracy": accuracy,
      "selection": {
          "round_0": {"folder": first_round, "selected_images": len(first.selected),
                      "related": _related_share(first, target_spec_dir)},
          "last_round": {"folder": last_round, "selected_images": len(last.selected),
                         "related": _related_share(last, target_spec_dir),
                         "level_predictions_accuracy": last.info.get(
                             "level_predictions_accuracy")}},
      "seconds": {k: round(v, 1) for k, v in seconds.items()},
      "export": export_path,
  }
  files.write_json_atomic(os.path.join(_OUTPUT_DIR.value, "run_report.json"), report)
  text = summary(report)
  files.write_text_atomic(os.path.join(_OUTPUT_DIR.value, "run_summary.txt"), text + "\n")
  print(text)


def run():
  runner.run(main)


if __name__ == "__main__":
  run()
