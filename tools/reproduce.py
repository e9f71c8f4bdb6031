r"""sjft-reproduce: the paper's ablation table on real data (../shared): target Oxford
Flowers 102 (official 10-a-class train split, official test split), source Tiny
ImageNet 200 (part 1, 30,000 images), MobileNet v1 0.25 with the ImageNet weights of
../shared, every row with the same training budget, several seeds, and a K0 sweep.

  sjft-reproduce --flagfile=flags/reproduce/flowers102.flags
Stages that are complete are reused (rerun = resume). Writes results.json,
results.md and figures/ under --output_dir.
"""

import dataclasses
import os
import time

from absl import app, flags

from sjft_tf import files
from sjft_tf.data import archives
from sjft_tf.experiments import ablation, figures
from sjft_tf.training import model, optimization, sampler, train
from tools import stages

_OUTPUT_DIR = flags.DEFINE_string("output_dir", "runs/reproduce", "Where selections, runs and the report go.")
_TARGET_DIR = flags.DEFINE_string("target_dir", "data/flowers102", "Ingested target dataset.")
_LEARNED = flags.DEFINE_string("learned_descriptors", "runs/flowers102/descriptors", "Learned-bank descriptor folder.")
_GABOR = flags.DEFINE_string("gabor_descriptors", "runs/flowers102/descriptors_gabor", "Gabor-bank descriptor folder.")
_UNPACK = flags.DEFINE_list("unpack", [], "Archives under ../shared/data to unpack into .cache/shared first (idempotent), as make shared-data does.")
_PREPARE = flags.DEFINE_list("prepare_flagfiles", [], "Stage flag files run first, in order, as tool=flagfile (e.g. sjft-ingest=flags/ingest/flowers102.flags); each reuses its complete output.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds: one run per row and seed.")
_ROWS = flags.DEFINE_list("rows", list(ablation.ROWS), "Rows of the table.")
_K0 = flags.DEFINE_integer("k0", 50, "Pool size per level of the selective rows.")
_K0_SWEEP = flags.DEFINE_list("k0_sweep", ["10", "50", "150"], "K0 values of the sweep (first seed).")
_MAX_NEIGHBOURS = flags.DEFINE_integer("max_neighbours", 1000, "Ranked neighbours per target.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Rounds of the iterative row.")
_VIEWS = flags.DEFINE_multi_enum("views", ["centre"], ["centre", "ten_crops"], "Test views evaluated.")
_TEST_SPLIT = flags.DEFINE_string("test_split", "test", "Target split of the table.")
_BASE = flags.DEFINE_string("base", "MobileNet", "keras.applications base.")
_ALPHA = flags.DEFINE_float("alpha", 0.25, "MobileNet width multiplier.")
_WEIGHTS = flags.DEFINE_string("weights", "../shared/weights/mobilenet_v1_0.25_imagenet/mobilenet_2_5_224_tf_no_top.h5", "Base weights.")
_INPUT_SIZE = flags.DEFINE_integer("input_size", 96, "Input side in pixels.")
_RESIZE_SIZE = flags.DEFINE_integer("resize_size", 110, "Square resize before the crop.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 64, "Images per batch (joint: both domains).")
_LEARNING_RATE = flags.DEFINE_float("learning_rate", 0.01, "Base learning rate (cosine).")
_SOURCE_WEIGHT = flags.DEFINE_float("source_loss_weight", 0.5, "Weight of the source head's loss (joint rows).")
_TOTAL_STEPS = flags.DEFINE_integer("total_steps", 480, "Batches per run, every row.")
_STEPS_PER_EPOCH = flags.DEFINE_integer("steps_per_epoch", 32, "Batches per epoch.")


def _template() -> train.TrainConfig:
  return train.TrainConfig(
      output_dir="", target_spec_dir=_TARGET_DIR.value,
      model=model.ModelConfig(_BASE.value, _WEIGHTS.value, _INPUT_SIZE.value,
                              _ALPHA.value if "MobileNet" in _BASE.value else None),
      optimizer=optimization.OptimizerConfig(learning_rate=_LEARNING_RATE.value),
      pairs=sampler.PairConfig(_BATCH_SIZE.value, _RESIZE_SIZE.value, _INPUT_SIZE.value),
      total_steps=_TOTAL_STEPS.value, steps_per_epoch=_STEPS_PER_EPOCH.value,
      source_loss_weight=_SOURCE_WEIGHT.value, strategy="one_device", verbose=0)


def _table(rows: dict, sweep: list, config: ablation.AblationConfig, seconds: float) -> str:
  views = list(config.views)
  lines = ["| row | " + " | ".join(f"test top-1 % ({v}), mean ± std" for v in views)
           + " | seeds | selected source images |",
           "|---|" + "---|" * len(views) + "---|---|"]
  for name, row in rows.items():
    cells = [f"{row[v]['mean'] * 100:.1f} ± {row[v]['std'] * 100:.1f}" for v in views]
    lines.append(f"| {ablation.ROW_TITLES[name]} | " + " | ".join(cells)
                 + f" | {len(row[views[0]]['values'])} | {row['selected_images']} |")
  lines += ["", "| K0 | selected source images | " + " | ".join(
      f"test top-1 % ({v})" for v in views) + " |", "|---|---|" + "---|" * len(views)]
  for point in sweep:
    lines.append(f"| {point['k0']} | {point['selected_images']} | "
                 + " | ".join(f"{point[v] * 100:.1f}" for v in views) + " |")
  runs = {r["run_dir"]: r["train_seconds"] for row in rows.values() for r in row["runs"]}
  runs.update({p["run_dir"]: p["train_seconds"] for p in sweep})
  train_seconds = sum(runs.values())
  lines += ["", f"Training, all {len(runs)} runs: {train_seconds / 60:.0f} min; this "
                f"invocation (reusing what was complete): {seconds / 60:.0f} min."]
  return "\n".join(lines)


def main(argv):
  del argv
  started = time.time()
  shared = archives.shared_dir()
  if (_UNPACK.value or _PREPARE.value) and shared is None:
    raise app.UsageError("preparing the data needs ../shared (or $SJFT_SHARED_DIR)")
  stage_seconds = {}
  for archive in _UNPACK.value:
    t = time.time()
    archives.extract(os.path.join(shared, "data", archive), archives.default_cache_dir())
    stage_seconds[f"unpack {archive}"] = round(time.time() - t, 1)
  for item in _PREPARE.value:
    tool, flagfile = item.split("=", 1)
    stage_seconds[item] = stages.run_stage(tool, f"--flagfile={flagfile}")
  config = ablation.AblationConfig(
      output_dir=_OUTPUT_DIR.value, learned_descriptors=_LEARNED.value,
      gabor_descriptors=_GABOR.value, train=_template(), test_split=_TEST_SPLIT.value,
      k0=_K0.value, k0_sweep=tuple(int(k) for k in _K0_SWEEP.value),
      max_neighbours=_MAX_NEIGHBOURS.value, seeds=tuple(int(s) for s in _SEEDS.value),
      rounds=_ROUNDS.value, views=tuple(_VIEWS.value))
  runs_dir = os.path.join(config.output_dir, "runs")
  results = {name: {"runs": []} for name in _ROWS.value}
  for seed in config.seeds:
    firsts = ablation.row_rounds(config, seed)
    for name in _ROWS.value:
      run_dir = os.path.join(runs_dir, name, f"seed{seed}")
      done = ablation.train_and_evaluate(config, name, seed, firsts[name], run_dir,
                                         _TARGET_DIR.value)
      selected = 0 if firsts[name] is None else ablation.selected_images(firsts[name])
      results[name]["runs"].append({
          "seed": seed, "run_dir": run_dir,
          # Training seconds of the call that trained it (a rerun reuses the run).
          "train_seconds": done["report"]["seconds_this_call"],
          "selected_images": selected,
          **{v: done["evaluation"]["views"][v]["top1"] for v in config.views}})
      print(f"{name} seed {seed}: " + ", ".join(
          f"{v} {done['evaluation']['views'][v]['top1']:.4f}" for v in config.views), flush=True)
  rows = {name: {**{v: ablation.summarise([r[v] for r in row["runs"]]) for v in config.views},
                 "selected_images": row["runs"][0]["selected_images"], "runs": row["runs"]}
          for name, row in results.items()}
  sweep = []
  for k0 in config.k0_sweep:
    first = ablation.row_rounds(config, config.seeds[0], k0)["selective_learned"]
    run_dir = os.path.join(runs_dir, "selective_learned" if k0 == config.k0 else
                           f"selective_learned_k{k0}", f"seed{config.seeds[0]}")
    done = ablation.train_and_evaluate(config, "selective_learned", config.seeds[0], first,
                                       run_dir, _TARGET_DIR.value)
    sweep.append({"k0": k0, "run_dir": run_dir,
                  "train_seconds": done["report"]["seconds_this_call"],
                  "selected_images": ablation.selected_images(first),
        **{v: done["evaluation"]["views"][v]["top1"] for v in config.views}})
    print(f"K0 {k0}: {sweep[-1]}", flush=True)
  seconds = time.time() - started
  figures_dir = os.path.join(config.output_dir, "figures")
  os.makedirs(figures_dir, exist_ok=True)
  figures.accuracy_bars(rows, ablation.ROW_TITLES, os.path.join(figures_dir, "ablation.png"),
                        config.views[0])
  learned_first = ablation.row_rounds(config, config.seeds[0])["selective_learned"]
  figures.neighbour_grid(learned_first, os.path.join(figures_dir, "neighbours.png"))
  curves = {name: os.path.join(runs_dir, name, f"seed{config.seeds[0]}", "history.csv")
            for name in ("target_only", "joint_random", "selective_learned_iterative")
            if name in rows}
  figures.learning_curves(curves, os.path.join(figures_dir, "learning_curves.png"))
  figures.k0_sweep(sweep, os.path.join(figures_dir, "k0_sweep.png"), config.views[0])
  files.write_json_atomic(os.path.join(config.output_dir, "results.json"), {
      "rows": rows, "k0_sweep": sweep, "seconds": round(seconds, 1),
      "prepare_seconds": stage_seconds,
      "config": dataclasses.asdict(config)})
  table = _table(rows, sweep, config, seconds)
  files.write_text_atomic(os.path.join(config.output_dir, "results.md"), table + "\n")
  print(table)


def run():
  app.run(main)


if __name__ == "__main__":
  run()
