r"""sjft-run: the whole method as one command: (demo data ->) ingest -> descriptors ->
selection -> joint training rounds -> evaluation -> export, plus the target-only
baseline, then a JSON report and a short summary.

  sjft-run --flagfile=flags/run/demo.flags      # what `make demo` runs
Every stage's flags are in its own flag file (--<stage>_flagfile), the file its command
line takes; the stages run in this process, each reusing its output when complete, so
a rerun resumes.
Writes <output_dir>/run_report.json and <output_dir>/run_summary.txt.
"""

import json
import os
import time

import numpy as np
from absl import flags

from sjft_tf import files, outputs
from sjft_tf.data import spec as spec_lib
from sjft_tf.evaluation import evaluate as evaluate_lib
from sjft_tf.export import serving
from sjft_tf.selection import manifest
from sjft_tf.training import train as train_lib
from sjft_tf.cli import (beam_flags, descriptors, evaluate, export, ingest, make_demo_data,
                         runner, select, train)

FLAG_VALUES = flags.FlagValues()
# --runner, --beam_options, --beam_workers, --dask_address: passed to the Beam stages.
_BEAM = beam_flags.define(FLAG_VALUES)
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "runs/demo", "Where the report goes.", flag_values=FLAG_VALUES)
_DEMO_DATA = flags.DEFINE_string("demo_data_flagfile", "", "sjft-make-demo-data flag file (empty: bring your own data).", flag_values=FLAG_VALUES)
_INGEST = flags.DEFINE_list("ingest_flagfiles", [], "sjft-ingest flag files, one per dataset.", flag_values=FLAG_VALUES)
_DESCRIPTORS = flags.DEFINE_string("descriptors_flagfile", None, "sjft-descriptors flag file.", required=True, flag_values=FLAG_VALUES)
_SELECT = flags.DEFINE_string("select_flagfile", None, "sjft-select flag file (round 0).", required=True, flag_values=FLAG_VALUES)
_TRAIN = flags.DEFINE_string("train_flagfile", None, "sjft-train flag file.", required=True, flag_values=FLAG_VALUES)
_EVAL = flags.DEFINE_string("eval_flagfile", None, "sjft-eval flag file (its --run_dir is the training run).", required=True, flag_values=FLAG_VALUES)
_EXPORT = flags.DEFINE_string("export_flagfile", "", "sjft-export flag file (empty: no export).", flag_values=FLAG_VALUES)
_BASELINE = flags.DEFINE_bool("baseline", True, "Also train and evaluate fine-tuning on the target alone, same flags otherwise.", flag_values=FLAG_VALUES)


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


def _accuracy(results: dict) -> dict:
  return {view: {"top1": r["top1"], "mean_per_class_accuracy": r["mean_per_class_accuracy"]}
          for view, r in results["views"].items()}


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
    seconds["demo data"] = runner.run_stage(make_demo_data, _DEMO_DATA.value)
  for i, flagfile in enumerate(_INGEST.value):
    seconds[f"ingest {i}"] = runner.run_stage(ingest, flagfile)
  beam = _BEAM.forwarded()  # --runner etc. reach the Beam stages
  seconds["descriptors"] = runner.run_stage(descriptors, _DESCRIPTORS.value, *beam)
  seconds["selection"] = runner.run_stage(select, _SELECT.value, *beam)
  seconds["training"] = runner.run_stage(train, _TRAIN.value)
  train_config = train.config_from_flags()
  seconds["evaluation"] = runner.run_stage(evaluate, _EVAL.value)
  spec_dir, eval_config = evaluate.SPEC_DIR.value, evaluate.config_from_flags()
  run = outputs.TrainedRun.read(train_config.output_dir)
  with open(evaluate_lib.result_paths(run.run_dir, eval_config.split)[0]) as f:
    accuracy = {"selective": _accuracy(json.load(f))}  # what the stage just wrote
  if _BASELINE.value:
    baseline = train_lib.target_only(train_config, f"{run.run_dir}_target_only")
    started = time.time()
    train_lib.train(baseline)
    seconds["baseline training"] = time.time() - started
    results = evaluate_lib.evaluate(baseline.output_dir, spec_dir, eval_config)
    seconds["baseline evaluation"] = time.time() - started - seconds["baseline training"]
    accuracy["target_only"] = _accuracy(results)
  export_path = None
  if _EXPORT.value:
    runner.parse_stage(export, _EXPORT.value)
    started = time.time()
    export_path, happened = serving.current_export(export.config_from_flags())
    if happened != "reused":
      seconds["export"] = time.time() - started
    if happened.startswith("replaced"):
      print(f"{export_path}: the version on disk was damaged and is exported again "
            f"{happened[len('replaced '):]}")
    elif happened != "exported" and happened != "reused":
      print(f"{export_path}: {happened}")
  first = manifest.load(run.first_round)
  last = manifest.load(run.last_round)
  target_spec_dir = first.provenance.target.spec_dir
  report = {
      "target": first.provenance.target.dataset, "source": first.provenance.source.dataset,
      "split": eval_config.split, "accuracy": accuracy,
      "selection": {
          "round_0": {"folder": run.first_round, "selected_images": len(first.selected),
                      "related": _related_share(first, target_spec_dir)},
          "last_round": {"folder": run.last_round, "selected_images": len(last.selected),
                         "related": _related_share(last, target_spec_dir),
                         "level_predictions_accuracy":
                             last.provenance.level_predictions_accuracy}},
      "seconds": {k: round(v, 1) for k, v in seconds.items()},
      "export": export_path,
  }
  files.write_json_atomic(os.path.join(_OUTPUT_DIR.value, "run_report.json"), report)
  text = summary(report)
  files.write_text_atomic(os.path.join(_OUTPUT_DIR.value, "run_summary.txt"), text + "\n")
  print(text)


def run():
  runner.run(main, FLAG_VALUES)


if __name__ == "__main__":
  run()
