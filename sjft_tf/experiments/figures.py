"""Figures of the ablation report (matplotlib, Agg backend, PNG written atomically)."""

import csv

import numpy as np

from sjft_tf import files
from sjft_tf.data import pipeline
from sjft_tf.data import spec as spec_lib
from sjft_tf.selection import manifest


def accuracy_bars(rows: dict, titles: dict, path: str, view: str = "centre") -> None:
  """Mean test accuracy per row with the seeds' standard deviation as error bars.

  Args:
    rows: row -> {view: {"mean", "std", "values"}} (view: any key of the rows, e.g.
      "val/centre/top1").
  """
  plt = files.pyplot()
  names = list(rows)
  means = [rows[n][view]["mean"] * 100 for n in names]
  stds = [rows[n][view]["std"] * 100 for n in names]
  figure, axes = plt.subplots(figsize=(8, 3.8))
  axes.bar(range(len(names)), means, yerr=stds, capsize=4, color="#4c72b0")
  for i, name in enumerate(names):
    axes.scatter([i] * len(rows[name][view]["values"]),
                 [v * 100 for v in rows[name][view]["values"]], color="k", s=8, zorder=3)
  low = min(m - s for m, s in zip(means, stds))
  axes.set_ylim(max(0, low - 5), max(m + s for m, s in zip(means, stds)) + 2)
  axes.set_xticks(range(len(names)))
  axes.set_xticklabels([titles.get(n, n) for n in names], rotation=20, ha="right", fontsize=8)
  axes.set_ylabel(f"accuracy % ({view})")
  axes.set_title("Ablation: mean and std over seeds (dots: seeds)")
  figure.tight_layout()
  files.save_figure_atomic(figure, path)


def _thumbnail(images: dict, row: int, size: int) -> np.ndarray:
  """uint8 [size, size, 3] of row `row` of `pipeline.load_encoded`'s images, decoded
  the way training reads them."""
  return pipeline.decode_resized(*(images[k][row] for k in ("encoded", "format", "height",
                                                            "width")), size).numpy().astype(np.uint8)


def neighbour_grid(round_folder: str, path: str, num_targets: int = 4,
                   num_neighbours: int = 8, size: int = 64,
                   title: str = "Nearest source images by filter-bank statistics") -> None:
  """For a few target images, their nearest source images (the paper's figure 2)."""
  plt = files.pyplot()
  selection = manifest.load(round_folder)
  # Targets of distinct classes, spread over the label range.
  classes = np.unique(selection.target_labels)
  wanted = np.unique(classes[np.linspace(0, len(classes) - 1, num_targets).astype(int)])
  num_targets = len(wanted)
  rows = [int(np.nonzero(selection.target_labels == c)[0][0]) for c in wanted]
  target, source = selection.provenance.target, selection.provenance.source
  target_names, source_names = (spec_lib.load_spec(ref.spec_dir).readable_names()
                                for ref in (target, source))
  targets = pipeline.load_encoded(target.spec_dir, target.splits, selection.target_ids[rows])
  neighbour_rows = selection.neighbours[rows, :num_neighbours]
  sources = pipeline.load_encoded(source.spec_dir, source.splits,
                                  selection.source_ids[np.unique(neighbour_rows)])
  by_id = {i: n for n, i in enumerate(sources["id"].tolist())}
  figure, axes = plt.subplots(num_targets, num_neighbours + 1, squeeze=False,
                              figsize=(1.2 * (num_neighbours + 1), 1.35 * num_targets))
  for r, row in enumerate(rows):
    axes[r, 0].imshow(_thumbnail(targets, r, size))
    target_name = target_names[selection.target_labels[row]].split(",")[0]
    axes[r, 0].set_title(f"target\n{target_name[:14]}", fontsize=6)
    for c, source in enumerate(neighbour_rows[r]):
      axes[r, c + 1].imshow(_thumbnail(sources, by_id[selection.source_ids[source]], size))
      label = source_names[selection.source_labels[source]].split(",")[0]
      axes[r, c + 1].set_title(label[:14], fontsize=6)
  for axis in axes.flat:
    axis.axis("off")
  figure.suptitle(title, fontsize=8)
  figure.tight_layout()
  files.save_figure_atomic(figure, path)


def learning_curves(histories: dict, path: str) -> None:
  """Loss and accuracy of both heads per epoch.

  Args:
    histories: name -> path of a history.csv (CSVLogger of sjft-train).
  """
  plt = files.pyplot()
  figure, (loss_axes, accuracy_axes) = plt.subplots(1, 2, figsize=(9, 3.5))
  for name, history_path in histories.items():
    with open(history_path) as f:
      rows = list(csv.DictReader(f))
    epochs = [int(r["epoch"]) + 1 for r in rows]
    # Each head's columns (runs of versions before target_loss named a target-only
    # run's numbers plain loss and accuracy).
    prefixes = {head: f"{head}_" for head in ("target", "source")
                if f"{head}_accuracy" in rows[0]} or {"target": ""}
    for head, prefix in prefixes.items():
      style = "-" if head == "target" else "--"
      loss_axes.plot(epochs, [float(r[f"{prefix}loss"]) for r in rows], style,
                     label=f"{name}: {head}")
      accuracy_axes.plot(epochs, [float(r[f"{prefix}accuracy"]) for r in rows], style,
                         label=f"{name}: {head}")
  loss_axes.set_xlabel("epoch")
  loss_axes.set_ylabel("training loss (per head)")
  accuracy_axes.set_xlabel("epoch")
  accuracy_axes.set_ylabel("training accuracy (per head)")
  accuracy_axes.legend(fontsize=6)
  figure.tight_layout()
  files.save_figure_atomic(figure, path)


VALIDATION_KEY = "target_validation_accuracy"


SOURCE_VALIDATION_KEY = "source_validation_accuracy"


def validation_curves(histories: dict, path: str, title: str = "",
                      key: str | None = None) -> bool:
  """Target validation accuracy (or the history column `key`, e.g. the source head's
  held-out accuracy, SOURCE_VALIDATION_KEY) against batches trained, one line per run:
  the learning curves by which training lengths are chosen.

  Args:
    histories: name -> (path of a history.csv, batches per epoch); runs without the
      column are left out.
    key: the column drawn (default the target head's, TrainConfig.validation_split).
  Returns:
    Whether any run had a curve (no figure is written otherwise).
  """
  plt = files.pyplot()
  figure, axes = plt.subplots(figsize=(9, 4.5))
  drawn = 0
  colours = plt.get_cmap("tab20").colors
  key = key or VALIDATION_KEY
  for index, (name, (history_path, steps_per_epoch)) in enumerate(histories.items()):
    with open(history_path) as f:
      rows = [r for r in csv.DictReader(f) if r.get(key) not in (None, "", "NA")]
    if not rows:
      continue
    axes.plot([(int(r["epoch"]) + 1) * steps_per_epoch for r in rows],
              [float(r[key]) * 100 for r in rows], marker="o", markersize=3,
              color=colours[index % len(colours)],
              linestyle=("-", "--", ":")[index // len(colours) % 3], label=name)
    drawn += 1
  if drawn:
    axes.set_xlabel("batches trained")
    axes.set_ylabel("source head held-out top-1 %" if key == SOURCE_VALIDATION_KEY
                    else "target validation top-1 %")
    axes.set_title(title, fontsize=9)
    axes.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.01, 0.5))
    figure.tight_layout()
    files.save_figure_atomic(figure, path)
  else:
    plt.close(figure)
  return bool(drawn)


def k0_sweep(points: list[dict], path: str, view: str = "centre") -> None:
  """Test accuracy and selected images against K0."""
  plt = files.pyplot()
  figure, axes = plt.subplots(figsize=(5, 3.2))
  k0s = [p["k0"] for p in points]
  axes.plot(k0s, [p[view] * 100 for p in points], "o-")
  for p in points:
    axes.annotate(f"{p['selected_images']:,} imgs", (p["k0"], p[view] * 100), fontsize=7,
                  textcoords="offset points", xytext=(4, 4))
  axes.set_xscale("log")
  axes.set_xlabel("K0 (pool size per level)")
  axes.set_ylabel(f"test top-1 % ({view})")
  axes.set_title("Selective, no iteration: K0 sweep (seed 0)", fontsize=9)
  figure.tight_layout()
  files.save_figure_atomic(figure, path)


def budget_sweep(points: list[dict], titles: dict, path: str, key: str,
                 whole_source: dict | None = None) -> None:
  """Accuracy (mean ± std over seeds, %) against the budget in source images, a line
  per row; `whole_source` ({"mean", "std"} of the joint_all row) as a band."""
  plt = files.pyplot()
  figure, axes = plt.subplots(figsize=(5.5, 3.4))
  for row in dict.fromkeys(p["row"] for p in points):
    mine = sorted((p for p in points if p["row"] == row), key=lambda p: p["budget"])
    axes.errorbar([p["budget"] for p in mine], [p[key]["mean"] * 100 for p in mine],
                  yerr=[p[key]["std"] * 100 for p in mine], marker="o", capsize=3,
                  label=titles.get(row, row))
  if whole_source:
    mean, std = whole_source["mean"] * 100, whole_source["std"] * 100
    axes.axhline(mean, color="grey", linestyle="--", label="joint, all source")
    axes.axhspan(mean - std, mean + std, color="grey", alpha=0.15)
  axes.set_xscale("log")
  axes.set_xlabel("budget (source images)")
  split, view, _ = key.split("/")
  axes.set_ylabel(f"{split} top-1 % ({view})")
  axes.set_title("Budget sweep (mean ± std over seeds)", fontsize=9)
  axes.legend(fontsize=7)
  figure.tight_layout()
  files.save_figure_atomic(figure, path)
