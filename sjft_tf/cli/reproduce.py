r"""sjft-reproduce: the paper's ablation table on real data (../shared): target Oxford
Flowers 102 (official 10-a-class train split, official test split), source Tiny
ImageNet 200 (part 1, 30,000 images), MobileNet v1 0.25 with the ImageNet weights of
../shared, every row with the same training budget, several seeds, and a K0 sweep.

  sjft-reproduce --flagfile=flags/reproduce/flowers102.flags
Stages that are complete are reused (rerun = resume). Writes results.json,
results.md and figures/ under --output_dir.
"""

import dataclasses
import glob
import os
import time

from absl import app, flags, logging

from sjft_tf import files
from sjft_tf.data import archives
from sjft_tf.data import spec as spec_lib
from sjft_tf.experiments import ablation, figures
from sjft_tf.selection import manifest, report, semantic
from sjft_tf.training import train
from sjft_tf.cli import config_flags, descriptors, ingest, runner, select

FLAG_VALUES = flags.FlagValues()
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "runs/reproduce", "Where selections, runs and the report go.", flag_values=FLAG_VALUES)
_TARGET_DIR = flags.DEFINE_string("target_dir", "data/flowers102", "Ingested target dataset.", flag_values=FLAG_VALUES)
_LEARNED = flags.DEFINE_string("learned_descriptors", "runs/flowers102/descriptors", "Learned-bank descriptor folder.", flag_values=FLAG_VALUES)
_GABOR = flags.DEFINE_string("gabor_descriptors", "", "Gabor-bank descriptor folder (only the selective_gabor row needs it).", flag_values=FLAG_VALUES)
_UNPACK = flags.DEFINE_list("unpack", [], "Archives under ../shared/data to unpack into .cache/shared first (idempotent), as make shared-data does.", flag_values=FLAG_VALUES)
_PREPARE = flags.DEFINE_list("prepare_flagfiles", [], "Stage flag files run first, in order, as tool=flagfile (e.g. sjft-ingest=flags/ingest/flowers102.flags); each reuses its complete output.", flag_values=FLAG_VALUES)
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds: one run per row and seed.", flag_values=FLAG_VALUES)
_ROWS = flags.DEFINE_list("rows", list(ablation.ROWS), "Rows of the table: " + ", ".join(f"{r} ({t})" for r, t in ablation.ROW_TITLES.items()) + ".", flag_values=FLAG_VALUES)
_K0 = flags.DEFINE_integer("k0", 50, "Pool size per level of the selective rows (when --budget_images=0).", flag_values=FLAG_VALUES)
_K0_SWEEP = flags.DEFINE_list("k0_sweep", [], "K0 values of a sweep of selective_learned (first seed); empty: no sweep.", flag_values=FLAG_VALUES)
_BUDGET = flags.DEFINE_integer("budget_images", 0, "Source images of every partial-source row (random, selective); 0: --k0 decides.", flag_values=FLAG_VALUES)
_EQUAL_TARGET = flags.DEFINE_bool("equal_target_images", True, "The target-only row takes half the batch, so every row sees the same target images.", flag_values=FLAG_VALUES)
_MAX_NEIGHBOURS = flags.DEFINE_integer("max_neighbours", 1000, "Ranked neighbours per target.", flag_values=FLAG_VALUES)
_MIN_IMAGES = flags.DEFINE_integer("min_images_per_class", 5, "Selected images a source class needs to keep a source-head output.", flag_values=FLAG_VALUES)
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Rounds of the iterative row.", flag_values=FLAG_VALUES)
_VIEWS = flags.DEFINE_multi_enum("views", ["centre"], ["centre", "ten_crops"], "Views evaluated.", flag_values=FLAG_VALUES)
_EVAL_SPLITS = flags.DEFINE_list("eval_splits", ["val"], "Target splits evaluated: the validation split while choosing settings; add the test split once, for the final table.", flag_values=FLAG_VALUES)
_FEATURE_WEIGHTS = flags.DEFINE_string("feature_weights", None, "Weights of the network of the deep-feature rows (default: --weights).", flag_values=FLAG_VALUES)
_VERBOSE = flags.DEFINE_integer("verbose", 2, "Keras progress of each run: 0 silent, 1 bar, 2 a line per epoch.", flag_values=FLAG_VALUES)
# The training settings of every run: sjft-train's flags, with this testbed's defaults.
_TRAIN = config_flags.define(
    FLAG_VALUES, train.TrainConfig, prefixes={"l2sp": "l2sp_"},
    skip=("output_dir", "first_round", "target_spec_dir", "target_split",
          "epochs_per_round", "strategy", "verbose"),
    defaults={"model.base": "MobileNet", "model.alpha": 0.25, "model.input_size": 96,
              "model.weights": "../shared/weights/mobilenet_v1_0.25_imagenet/"
                               "mobilenet_2_5_224_tf_no_top.h5",
              "pairs.resize_size": 110, "pairs.batch_size": 64, "total_steps": 480,
              "steps_per_epoch": 32})


def _template() -> train.TrainConfig:
  template = _TRAIN(output_dir="", target_spec_dir=_TARGET_DIR.value, strategy="one_device",
                    verbose=_VERBOSE.value)
  if "MobileNet" not in template.model.base:
    template = dataclasses.replace(
        template, model=dataclasses.replace(template.model, alpha=None))
  return template


_STAGES = {"sjft-ingest": ingest, "sjft-descriptors": descriptors, "sjft-select": select}


def _metrics(config: ablation.AblationConfig):
  """(key, split, view, metric) of every number a run reports."""
  return [(f"{split}/{view}/{metric}", split, view, metric)
          for split in config.eval_splits for view in config.views
          for metric in ("top1", "mean_per_class_accuracy")]


def _table(rows: dict, sweep: list, config: ablation.AblationConfig, seconds: float) -> str:
  keys = _metrics(config)
  short = {"top1": "top-1", "mean_per_class_accuracy": "mean per class"}
  lines = ["| row | " + " | ".join(f"{split} {short[metric]} % ({view})"
                                    for _, split, view, metric in keys)
           + " | seeds | selected source images (first / last round) |",
           "|---|" + "---|" * len(keys) + "---|---|"]
  for name, row in rows.items():
    cells = [f"{row[k]['mean'] * 100:.1f} ± {row[k]['std'] * 100:.1f}" for k, *_ in keys]
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
  runs = {r["run_dir"]: r["train_seconds"] for row in rows.values() for r in row["runs"]}
  runs.update({p["run_dir"]: p["train_seconds"] for p in sweep})
  lines += ["", _budget_line(config, rows),
            "", f"Training, all {len(runs)} runs: {sum(runs.values()) / 60:.0f} min; this "
                f"invocation (reusing what was complete): {seconds / 60:.0f} min."]
  return "\n".join(lines)


def _budget_line(config: ablation.AblationConfig, rows: dict) -> str:
  """The training budget in target and source epochs."""
  template = config.train
  pairs = template.total_steps * template.pairs.batch_size // 2
  train_images = spec_lib.load_spec(template.target_spec_dir).splits["train"].num_examples
  text = (f"Budget: {template.total_steps} batches; every joint row sees {pairs:,} target "
          f"images ({pairs / train_images:.1f} epochs of the {train_images:,} training "
          f"images), the target-only row "
          + ("the same" if config.equal_target_images else "twice as many"))
  partial = [row["selected_images"] for name, row in rows.items()
             if name != "target_only" and row["selected_images"]]
  if partial:
    text += (f"; the joint rows also see {pairs:,} source images ({pairs / max(partial):.1f}"
             f"-{pairs / min(partial):.1f} passes over their {min(partial):,}-"
             f"{max(partial):,} selected images)")
  return text + "."


def _final_selected(run_dir: str, first_round: str | None) -> int:
  """Selected source images of the run's last round (its rounds/ folder, else the first)."""
  if first_round is None:
    return 0
  rounds = sorted(glob.glob(os.path.join(run_dir, "rounds", "round_*")))
  rounds = [r for r in rounds if os.path.exists(os.path.join(r, "selection.json"))]
  return ablation.selected_images(rounds[-1] if rounds else first_round)


def main(argv):
  del argv
  started = time.time()
  shared = archives.shared_dir()
  if (_UNPACK.value or _PREPARE.value) and shared is None:
    raise app.UsageError("preparing the data needs ../shared (or $SJFT_SHARED_DIR)")
  unknown = sorted(set(_ROWS.value) - set(ablation.ROWS))
  if unknown:
    raise app.UsageError(f"unknown rows {unknown}; known: {list(ablation.ROWS)}")
  if "selective_gabor" in _ROWS.value and not _GABOR.value:
    raise app.UsageError("the selective_gabor row needs --gabor_descriptors")
  stage_seconds = {}
  for archive in _UNPACK.value:
    t = time.time()
    archives.extract(os.path.join(shared, "data", archive), archives.default_cache_dir())
    stage_seconds[f"unpack {archive}"] = round(time.time() - t, 1)
  for item in _PREPARE.value:
    tool, flagfile = item.split("=", 1)
    if tool not in _STAGES:
      raise app.UsageError(f"--prepare_flagfiles: unknown tool {tool}; known: {sorted(_STAGES)}")
    stage_seconds[item] = runner.run_stage(_STAGES[tool], flagfile)
  template = _template()
  config = ablation.AblationConfig(
      output_dir=_OUTPUT_DIR.value, learned_descriptors=_LEARNED.value,
      gabor_descriptors=_GABOR.value, train=template, eval_splits=tuple(_EVAL_SPLITS.value),
      k0=_K0.value, k0_sweep=tuple(int(k) for k in _K0_SWEEP.value),
      max_neighbours=_MAX_NEIGHBOURS.value, min_images_per_class=_MIN_IMAGES.value, seeds=tuple(int(s) for s in _SEEDS.value),
      rounds=_ROUNDS.value, views=tuple(_VIEWS.value), budget_images=_BUDGET.value,
      equal_target_images=_EQUAL_TARGET.value,
      features=semantic.FeatureConfig(template.model.base,
                                      _FEATURE_WEIGHTS.value or template.model.weights,
                                      template.model.alpha, template.model.input_size))
  keys = _metrics(config)
  runs_dir = os.path.join(config.output_dir, "runs")
  results = {name: {"runs": []} for name in _ROWS.value}
  total = len(config.seeds) * len(_ROWS.value)
  for seed in config.seeds:
    firsts = ablation.row_rounds(config, seed, rows=tuple(_ROWS.value))
    for name in _ROWS.value:
      run_dir = os.path.join(runs_dir, name, f"seed{seed}")
      done_runs = sum(len(r["runs"]) for r in results.values())
      elapsed = time.time() - started
      eta = f", about {elapsed / done_runs * (total - done_runs) / 60:.0f} min left" if (
          done_runs) else ""
      logging.info("run %d of %d: %s, seed %d (%.0f min elapsed%s)", done_runs + 1, total,
                   name, seed, elapsed / 60, eta)
      done = ablation.train_and_evaluate(config, name, seed, firsts[name], run_dir,
                                         _TARGET_DIR.value)
      selected = 0 if firsts[name] is None else ablation.selected_images(firsts[name])
      results[name]["runs"].append({
          "seed": seed, "run_dir": run_dir,
          # Training seconds of the call that trained it (a rerun reuses the run).
          "train_seconds": done["report"]["seconds_this_call"],
          "selected_images": selected,
          "final_selected_images": _final_selected(run_dir, firsts[name]),
          **{key: done["evaluation"][split]["views"][view][metric]
             for key, split, view, metric in keys}})
      print(f"{name} seed {seed}: " + ", ".join(
          f"{key} {results[name]['runs'][-1][key]:.4f}" for key, *_ in keys), flush=True)
  rows = {name: {**{key: ablation.summarise([r[key] for r in row["runs"]]) for key, *_ in keys},
                 "selected_images": row["runs"][0]["selected_images"],
                 "final_selected_images": row["runs"][0]["final_selected_images"],
                 "runs": row["runs"]}
          for name, row in results.items()}
  sweep = []
  for k0 in config.k0_sweep:
    first = ablation.row_rounds(config, config.seeds[0], k0)["selective_learned"]
    run_dir = os.path.join(runs_dir, f"selective_learned_k{k0}", f"seed{config.seeds[0]}")
    done = ablation.train_and_evaluate(config, "selective_learned", config.seeds[0], first,
                                       run_dir, _TARGET_DIR.value)
    sweep.append({"k0": k0, "run_dir": run_dir,
                  "train_seconds": done["report"]["seconds_this_call"],
                  "selected_images": ablation.selected_images(first),
                  **{key: done["evaluation"][split]["views"][view][metric]
                     for key, split, view, metric in keys}})
    print(f"K0 {k0}: {sweep[-1]}", flush=True)
  seconds = time.time() - started
  figures_dir = os.path.join(config.output_dir, "figures")
  os.makedirs(figures_dir, exist_ok=True)
  first_key = keys[0][0]
  figures.accuracy_bars(rows, ablation.ROW_TITLES, os.path.join(figures_dir, "ablation.png"),
                        first_key)
  firsts = ablation.row_rounds(config, config.seeds[0], rows=tuple(_ROWS.value))
  for name, title in (("selective_learned", "filter-bank statistics"),
                      ("selective_deep", "cosine of pretrained pooled features")):
    if firsts.get(name):
      figures.neighbour_grid(firsts[name], os.path.join(figures_dir, f"neighbours_{name}.png"),
                             title=f"Nearest source images by {title}")
  for folder in {f for f in firsts.values() if f}:
    report.write(manifest.load(folder), folder)
  curves = {name: os.path.join(runs_dir, name, f"seed{config.seeds[0]}", "history.csv")
            for name in rows}
  figures.learning_curves(curves, os.path.join(figures_dir, "learning_curves.png"))
  if sweep:
    figures.k0_sweep(sweep, os.path.join(figures_dir, "k0_sweep.png"), first_key)
  files.write_json_atomic(os.path.join(config.output_dir, "results.json"), {
      "rows": rows, "k0_sweep": sweep, "seconds": round(seconds, 1),
      # This call's unpack / ingest / descriptor times (a reused stage takes seconds).
      "prepare_seconds_this_call": stage_seconds,
      "config": dataclasses.asdict(config)})
  table = _table(rows, sweep, config, seconds)
  files.write_text_atomic(os.path.join(config.output_dir, "results.md"), table + "\n")
  print(table)


def run():
  runner.run(main, FLAG_VALUES)


if __name__ == "__main__":
  run()
