"""The ablation table as one call: every row and seed of an `AblationConfig` trained
(or reused) and evaluated, the K0 and budget sweeps, the figures, results.json and
results.md.

  from sjft_tf.experiments import ablation, reproduce
  results = reproduce.run(ablation.AblationConfig(output_dir=..., ..., train=template))

Every stage reuses what is complete (`files.matches`), so a rerun resumes, and a rerun
with the test split added to eval_splits evaluates the same runs once more.
"""

import dataclasses
import os
import time

import numpy as np
from absl import logging

from sjft_tf import files, outputs
from sjft_tf.data import spec as spec_lib
from sjft_tf.experiments import ablation, figures, summary
from sjft_tf.selection import manifest, report

_SHORT_METRICS = {"top1": "top-1", "mean_per_class_accuracy": "mean per class"}


def metric_keys(config: ablation.AblationConfig) -> list[tuple[str, str, str, str]]:
  """(key, split, view, metric) of every number a run reports, e.g.
  ("val/centre/top1", "val", "centre", "top1")."""
  return [(f"{split}/{view}/{metric}", split, view, metric)
          for split in config.eval_splits for view in config.views
          for metric in _SHORT_METRICS]


def markdown_table(rows: dict, sweep: list, config: ablation.AblationConfig,
                   seconds: float, budget_sweep: list = ()) -> str:
  """results.md: a row per table row (mean ± std in %), the sweeps, the budget, times."""
  keys = metric_keys(config)
  lines = ["| row | " + " | ".join(f"{split} {_SHORT_METRICS[metric]} % ({view})"
                                    for _, split, view, metric in keys)
           + " | target train % (last epoch) | source head train % | source head "
             "held-out % | seeds | selected source images (first / last round) |",
           "|---|" + "---|" * len(keys) + "---|---|---|---|---|"]
  for name, row in rows.items():
    cells = [f"{row[k]['mean'] * 100:.1f} ± {row[k]['std'] * 100:.1f}" for k, *_ in keys]
    cells += [_mean_percent(row["runs"], key) for key in (
        "target_train_accuracy", "source_train_accuracy", "source_validation_accuracy")]
    lines.append(f"| {ablation.ROW_TITLES[name]} | " + " | ".join(cells)
                 + f" | {len(row[keys[0][0]]['values'])} | {row['selected_images']} / "
                   f"{row['final_selected_images']} |")
  if sweep:
    lines += ["", "| K0 | selected source images | " + " | ".join(
        f"{split} top-1 % ({view})" for _, split, view, metric in keys if metric == "top1")
              + " |", "|---|---|" + "---|" * (len(keys) // 2)]
    for point in sweep:
      lines.append(f"| {point['k0']} | {point['selected_images']} | " + " | ".join(
          f"{point[k] * 100:.1f}" for k, *_, metric in keys if metric == "top1") + " |")
  if budget_sweep:
    lines += ["", "| budget (source images) | row | selected source images | " + " | ".join(
        f"{split} {_SHORT_METRICS[metric]} % ({view})" for _, split, view, metric in keys)
              + " | source head train % | source head held-out % | seeds |",
              "|---|---|---|" + "---|" * len(keys) + "---|---|---|"]
    for point in budget_sweep:
      lines.append(f"| {point['budget']:,} | {ablation.ROW_TITLES[point['row']]} | "
                   f"{point['selected_images']:,} | " + " | ".join(
                       f"{point[k]['mean'] * 100:.1f} ± {point[k]['std'] * 100:.1f}"
                       for k, *_ in keys)
                   + "".join(f" | {_mean_percent(point['runs'], key)}" for key in (
                       "source_train_accuracy", "source_validation_accuracy"))
                   + f" | {len(point['runs'])} |")
  runs = {r["run_dir"]: r["train_seconds"] for row in rows.values() for r in row["runs"]}
  runs.update({p["run_dir"]: p["train_seconds"] for p in sweep})
  runs.update({r["run_dir"]: r["train_seconds"] for p in budget_sweep for r in p["runs"]})
  lines += ["", budget_line(config, rows),
            "", f"Training, all {len(runs)} runs: {sum(runs.values()) / 60:.0f} min; this "
                f"invocation (reusing what was complete): {seconds / 60:.0f} min."]
  return "\n".join(lines)


def budget_line(config: ablation.AblationConfig, rows: dict) -> str:
  """The training budget in target and source epochs."""
  template = config.train
  targets = template.total_steps * template.pairs.target_images_per_batch()
  sources = template.total_steps * template.pairs.batch_size - targets
  train_images = spec_lib.load_spec(template.target_spec_dir).splits["train"].num_examples
  text = (f"Budget: {template.total_steps} batches; every joint row sees {targets:,} target "
          f"images ({targets / train_images:.1f} epochs of the {train_images:,} training "
          f"images), the target-only row "
          + ("the same" if config.equal_target_images else
             f"{template.pairs.group_size} times as many"))
  partial = [size for name, row in rows.items() if name != "target_only"  # both rounds
             for size in (row["selected_images"], row.get("final_selected_images", 0))
             if size]
  if partial:
    text += (f"; the joint rows also see {sources:,} source images ({sources / max(partial):.1f}"
             f"-{sources / min(partial):.1f} passes over their {min(partial):,}-"
             f"{max(partial):,} selected images)")
  return text + "."


def _measured(config, row: str, seed: int, firsts: dict | None, run_dir: str, head: dict,
              with_final_round: bool = True) -> dict | None:
  """One run trained (or reused) and evaluated: `head`, then its numbers. With
  config.complete_runs_only (firsts None), the run as stored, or None when incomplete."""
  if config.complete_runs_only:
    done = ablation.completed(config, row, seed, run_dir)
    if done is None:
      return None
  else:
    done = ablation.train_and_evaluate(config, row, seed, firsts[row], run_dir,
                                       config.train.target_spec_dir)
  first_round = done["first_round"]
  record = {**head, "run_dir": run_dir, "first_round": first_round,
            # Training seconds of the calls that trained its runs (a rerun reuses them).
            "train_seconds": done["seconds"],
            "target_train_accuracy": target_train_accuracy(done["report"]),
            **source_head_accuracies(done["report"]),
            "selected_images": 0 if first_round is None else ablation.selected_images(
                first_round)}
  if with_final_round:  # of the last round the run trained on (a pre-training row's
    # last run trains on the target alone: its first stage's round)
    last_round = None if first_round is None else outputs.TrainedRun.read(run_dir).last_round
    record["final_selected_images"] = 0 if first_round is None else (
        ablation.selected_images(last_round) if last_round else record["selected_images"])
  views = {f"{split}/{view}": done["evaluation"][split]["views"][view]
           for split in config.eval_splits for view in config.views}
  # Whether each image was right (summary.py's paired intervals) and the splits' sizes.
  record["correct"] = {key: view["correct"] for key, view in views.items() if "correct" in view}
  record["images"] = {key.split("/")[0]: view["images"] for key, view in views.items()}
  return {**record, **{key: views[f"{split}/{view}"][metric]
                       for key, split, view, metric in metric_keys(config)}}


def target_train_accuracy(report: dict) -> float | None:
  """The target head's training accuracy in the last epoch of a run's report (joint
  runs log it as target_accuracy, runs of older versions without a source as accuracy)."""
  logs = report.get("final_epoch_logs", {})
  value = logs.get("target_accuracy", logs.get("accuracy"))
  return None if value is None else float(value)


def source_head_accuracies(report: dict) -> dict:
  """The source head's last-epoch training accuracy and, where the run measured it,
  its accuracy on the held-out source split ({} for a run without a source)."""
  logs = report.get("final_epoch_logs", {})
  return {key: float(logs[name]) for key, name in (
      ("source_train_accuracy", "source_accuracy"),
      ("source_validation_accuracy", "source_validation_accuracy")) if name in logs}


def _mean_percent(runs: list[dict], key: str) -> str:
  values = [r[key] for r in runs if r.get(key) is not None]
  return f"{np.mean(values) * 100:.1f}" if values else ""


def _summarised(config: ablation.AblationConfig, runs: list[dict]) -> dict:
  """{key: {"values", "mean", "std"} for every metric key, "selected_images" (the
  first run's), "runs"} of one row's (or sweep point's) per-seed records."""
  return {**{key: ablation.summarise([r[key] for r in runs])
             for key, *_ in metric_keys(config)},
          "selected_images": runs[0]["selected_images"], "runs": runs}


def budget_sweep(config: ablation.AblationConfig) -> list[dict]:
  """Every budget of config.budget_sweep, every row of config.budget_sweep_rows, every
  seed: trained (or reused; with complete_runs_only only read) and evaluated.

  Returns:
    [{"budget", "row", "selected_images" (first seed's), key: {"values", "mean",
    "std"} for every metric key, "runs": [per-seed records]}], by budget, then in
    budget_sweep_rows' order; a point without any complete run is left out.
  """
  points = []
  for budget in sorted(set(config.budget_sweep)):
    at_budget = dataclasses.replace(config, budget_images=budget)
    measured = {row: [] for row in config.budget_sweep_rows}
    for seed in config.seeds:
      firsts = None if config.complete_runs_only else ablation.row_rounds(
          at_budget, seed, rows=config.budget_sweep_rows)
      for row in config.budget_sweep_rows:
        logging.info("budget sweep: %s at %d source images, seed %d", row, budget, seed)
        record = _measured(at_budget, row, seed, firsts,
                           ablation.budget_run_dir(config, row, budget, seed),
                           {"seed": seed}, with_final_round=False)
        if record is not None:
          measured[row].append(record)
    for row, runs in measured.items():
      if runs:
        points.append({"budget": budget, "row": row, **_summarised(config, runs)})
        print(f"budget {budget}, {row}: " + ", ".join(
            f"{key} {points[-1][key]['mean']:.4f}" for key, *_ in metric_keys(config)),
              flush=True)
  return points


def _write_figures(config, rows: dict, sweep: list, budget_points: list = ()) -> None:
  runs_dir, figures_dir = (os.path.join(config.output_dir, name)
                           for name in ("runs", "figures"))
  first_key, seed = metric_keys(config)[0][0], config.seeds[0]
  figures.accuracy_bars(rows, ablation.ROW_TITLES, os.path.join(figures_dir, "ablation.png"),
                        first_key)
  # The first rounds of the first seed's runs (as the runs record them).
  firsts = {name: run["first_round"] for name, row in rows.items()
            for run in row["runs"] if run["seed"] == seed}
  for name, title in (("selective_learned", "filter-bank statistics"),
                      ("selective_deep", "cosine of pretrained pooled features")):
    if firsts.get(name):
      figures.neighbour_grid(firsts[name], os.path.join(figures_dir, f"neighbours_{name}.png"),
                             title=f"Nearest source images by {title}")
  sweep_firsts = {run["first_round"] for point in budget_points for run in point["runs"]
                  if run["seed"] == seed}
  for folder in {f for f in firsts.values() if f} | sweep_firsts:
    report.write(manifest.load(folder), folder)
  figures.learning_curves(
      {name: os.path.join(runs_dir, name, f"seed{seed}", "history.csv") for name in rows},
      os.path.join(figures_dir, "learning_curves.png"))
  histories = {f"{name} seed {run['seed']}": (os.path.join(run["run_dir"], "history.csv"),
                                              config.train.steps_per_epoch)
               for name, row in rows.items() for run in row["runs"]}
  figures.validation_curves(histories, os.path.join(figures_dir, "validation_curves.png"),
                            f"{config.train.validation_split} split, every run")
  figures.validation_curves(histories, os.path.join(figures_dir, "source_head_curves.png"),
                            f"source head on {config.train.source_validation_split}, every "
                            f"joint run", key=figures.SOURCE_VALIDATION_KEY)
  if sweep:
    figures.k0_sweep(sweep, os.path.join(figures_dir, "k0_sweep.png"), first_key)
  if budget_points:
    figures.budget_sweep(budget_points, ablation.ROW_TITLES,
                         os.path.join(figures_dir, "budget_sweep.png"), first_key,
                         whole_source=rows.get("joint_all", {}).get(first_key))


def run(config: ablation.AblationConfig, prepare_seconds: dict | None = None) -> dict:
  """Trains and evaluates every row and seed (reusing what is complete), then the K0
  and budget sweeps; writes figures/, results.json and results.md under config.output_dir.

  Args:
    prepare_seconds: times of the data preparation before it (recorded as they are).
  Returns:
    results.json: {"rows": {row: {key: {"values", "mean", "std"}, "selected_images",
    "final_selected_images", "runs": [...]}}, "k0_sweep": [...], "budget_sweep":
    [...] (`budget_sweep`), "seconds", "config"}.
  """
  # Over 60 lines: the study's one sequence (rows x seeds, the sweeps, the report), each
  # step a call; its progress lines and timing belong to the whole.
  started = time.time()
  config = ablation.sized(config)
  keys = metric_keys(config)
  runs_dir = os.path.join(config.output_dir, "runs")
  measured = {name: [] for name in config.rows}
  total = len(config.seeds) * len(config.rows)
  for seed in config.seeds:
    firsts = None if config.complete_runs_only else ablation.row_rounds(config, seed)
    for name in config.rows:
      done_runs, elapsed = sum(map(len, measured.values())), time.time() - started
      eta = f", about {elapsed / done_runs * (total - done_runs) / 60:.0f} min left" if (
          done_runs) else ""
      if not config.complete_runs_only:  # (reading a run takes seconds)
        logging.info("run %d of %d: %s, seed %d (%.0f min elapsed%s)", done_runs + 1,
                     total, name, seed, elapsed / 60, eta)
      record = _measured(config, name, seed, firsts,
                         os.path.join(runs_dir, name, f"seed{seed}"), {"seed": seed})
      if record is None:
        logging.info("%s seed %d: not complete, left out of the table", name, seed)
        continue
      measured[name].append(record)
      print(f"{name} seed {seed}: " + ", ".join(
          f"{key} {record[key]:.4f}" for key, *_ in keys), flush=True)
  rows = {name: {**_summarised(config, runs),
                 "final_selected_images": runs[0]["final_selected_images"]}
          for name, runs in measured.items() if runs}
  sweep = []
  for k0 in config.k0_sweep:
    firsts = None if config.complete_runs_only else {
        "selective_learned": ablation.row_rounds(config, config.seeds[0], k0)[
            "selective_learned"]}
    record = _measured(config, "selective_learned", config.seeds[0], firsts,
                       os.path.join(runs_dir, f"selective_learned_k{k0}",
                                    f"seed{config.seeds[0]}"),
                       {"k0": k0}, with_final_round=False)
    if record is not None:
      sweep.append(record)
      print(f"K0 {k0}: {record}", flush=True)
  budget_points = budget_sweep(config)
  seconds = time.time() - started
  _write_figures(config, rows, sweep, budget_points)
  results = {"rows": rows, "k0_sweep": sweep, "budget_sweep": budget_points,
             "split_images": {split: n for row in rows.values() for run in row["runs"]
                              for split, n in run["images"].items()},
             "seconds": round(seconds, 1),
             # This call's unpack / ingest / descriptor times (a reused stage takes seconds).
             "prepare_seconds_this_call": prepare_seconds or {},
             "config": dataclasses.asdict(config)}
  files.write_json_atomic(os.path.join(config.output_dir, "results.json"), results)
  table = markdown_table(rows, sweep, config, seconds, budget_points)
  if rows:
    table += "\n\n" + summary.markdown(results, ablation.ROW_TITLES)
  files.write_text_atomic(os.path.join(config.output_dir, "results.md"), table + "\n")
  print(table)
  return results
