"""What was selected for which target class: per target class, the source classes its
images' pools draw on most, their share, and that share against the source's own.

Written by sjft-select beside a round as class_report.json and class_report.png, so a
user can check that the neighbours make sense without reading selection.npz.
"""

import os

import numpy as np

from sjft_tf import files
from sjft_tf.data import spec as spec_lib
from sjft_tf.selection import manifest

JSON_FILENAME = "class_report.json"
FIGURE_FILENAME = "class_report.png"


def class_report(selection: manifest.Selection, target_class_names: list,
                 source_display_names: list | None = None, top: int = 5) -> dict:
  """Per target class, its `top` most selected source classes; overall, every source
  class selected. Ranked by images, ties by lift (the class rarer in the source
  first), then by name: never by label order.

  A target class's selected images are the union of its target images' pools, each
  image once. For a source class c: `images` (how many of those are of c), `share`
  (images / the class's selected images) and `lift` (share / c's share of the whole
  source; above 1 means selection favours c for this target class).
  Args:
    selection: a round.
    target_class_names: names of the target labels (readable ones where known).
    source_display_names: readable names of the source labels (`name` in each entry);
      None: the class names.
  Returns:
    {"target_classes": {name: {"selected_images", "top": [{"source_class", "name",
    "images", "share", "lift"}]}}, "overall": the same for all targets together, with
    every selected class}.
  """
  source_names = source_display_names or selection.source_class_names
  source_share = np.bincount(selection.source_labels,
                             minlength=len(selection.source_class_names)) / max(
                                 len(selection.source_labels), 1)

  def summary(rows: np.ndarray, top: int | None) -> dict:
    counts = np.bincount(selection.source_labels[rows],
                         minlength=len(selection.source_class_names))
    total = max(int(counts.sum()), 1)
    lift = counts / total / np.maximum(source_share, 1e-12)
    order = sorted(range(len(counts)), key=lambda c: (-counts[c], -lift[c],
                                                      str(source_names[c])))[:top]
    return {"selected_images": int(counts.sum()), "top": [
        {"source_class": selection.source_class_names[c], "name": source_names[c],
         "images": int(counts[c]),
         "share": round(counts[c] / total, 4),
         "lift": round(counts[c] / total / max(source_share[c], 1e-12), 2)}
        for c in order if counts[c]]}

  pools = selection.pools()
  by_class = {}
  for label in np.unique(selection.target_labels):
    members = np.nonzero(selection.target_labels == label)[0]
    rows = np.unique(np.concatenate([pools[i] for i in members] + [np.zeros(0, np.int64)]))
    by_class[target_class_names[label]] = summary(rows.astype(np.int64), top)
  return {"round": selection.round_index, "target_classes": by_class,
          "overall": summary(selection.selected, None)}


def plot(report: dict, path: str, max_target_classes: int = 40) -> None:
  """Each target class's most selected source class and its lift (horizontal bars)."""
  plt = files.pyplot()
  items = [(name, entry["top"][0]) for name, entry in report["target_classes"].items()
           if entry["top"]][:max_target_classes]
  figure, axes = plt.subplots(figsize=(7, 0.22 * len(items) + 1.2))
  axes.barh(range(len(items)), [top["lift"] for _, top in items], color="#4c72b0")
  axes.set_yticks(range(len(items)))
  axes.set_yticklabels([f"{name[:24]} <- {top['name'][:24]} ({top['share']:.0%})"
                        for name, top in items], fontsize=6)
  axes.invert_yaxis()
  axes.axvline(1.0, color="k", lw=0.8)
  axes.set_xlabel("lift of the most selected source class (its share / its share of "
                  "the source)", fontsize=7)
  axes.set_title(f"Round {report['round']}: what each target class draws on", fontsize=8)
  figure.tight_layout()
  files.save_figure_atomic(figure, path)


def write(selection: manifest.Selection, folder: str) -> dict:
  """Writes class_report.json and class_report.png into the round folder, with the
  readable class names of both datasets' specs."""
  names = [spec_lib.load_spec(ref.spec_dir).readable_names()
           for ref in (selection.provenance.target, selection.provenance.source)]
  report = class_report(selection, *names)
  files.write_json_atomic(os.path.join(folder, JSON_FILENAME), report)
  plot(report, os.path.join(folder, FIGURE_FILENAME))
  return report
