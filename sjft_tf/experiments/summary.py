"""What a study's results.json says, for a reader: the per-seed numbers, the verdict
table (each row against target_only, each selective row against joint_random at the same
budget, with 95% intervals: verdict.py), and the best row on validation with its test
figure. Pure functions of results.json's content, so that a study of any version can be
summarised again from its committed results.json.

  results = json.load(open("runs/my_comparison/results.json"))
  best_row(results)   # {"row", "seed", "validation", "test" (None before it is read)}
  print(markdown(results))
"""

import os
import re

import numpy as np

from sjft_tf import errors
from sjft_tf.evaluation import metrics
from sjft_tf.experiments import rows as rows_lib
from sjft_tf.experiments import verdict

# The rows every other row is read against, and the rows read against the random subset.
BASELINE_ROW = "target_only"
RANDOM_ROW = "joint_random"
TEST_SPLIT = "test"
# Around markdown()'s sections in results.md, so that they can be written again.
BEGIN, END = "<!-- summary: sjft_tf/experiments/summary.py -->", "<!-- end of summary -->"


def validation_split(results: dict) -> str:
  """The split settings are chosen on: the training template's validation split when
  the study reports it, else its first split that is not the test split."""
  config = results["config"]
  splits = list(config["eval_splits"])
  chosen = config.get("train", {}).get("validation_split")
  if chosen in splits:
    return chosen
  others = [s for s in splits if s != TEST_SPLIT]
  if not others:
    raise errors.InputError(f"the study reports only {splits}: no validation split to choose on")
  return others[0]


def top1_key(results: dict, split: str) -> str:
  """The metric key of a split's top-1 in the study's first view, e.g. val/centre/top1."""
  return f"{split}/{results['config']['views'][0]}/top1"


def _runs_by_seed(results: dict, row: str) -> dict:
  return {run["seed"]: run for run in results["rows"][row]["runs"]}


def best_row(results: dict) -> dict:
  """The row with the highest mean validation top-1, and its seed best on validation.

  Returns:
    {"row", "seed", "run_dir", "validation_split", "validation": the row's mean, "test":
    the row's mean test top-1, or None while the test split is not read}.
  """
  split = validation_split(results)
  key = top1_key(results, split)
  rows = {name: row for name, row in results["rows"].items() if key in row}
  if not rows:
    raise errors.InputError(f"the study has no row evaluated on {split}")
  name = max(rows, key=lambda n: (rows[n][key]["mean"], n))
  run = _best_seed(rows[name]["runs"], key)
  test_key = top1_key(results, TEST_SPLIT)
  return {"row": name, "seed": run["seed"], "run_dir": run["run_dir"],
          "validation_split": split, "validation": rows[name][key]["mean"],
          "test": rows[name][test_key]["mean"] if test_key in rows[name] else None}


def _is_selective(row: str) -> bool:
  """A joint row trained on a selection (rows.REGISTRY), the rows read against random."""
  entry = rows_lib.REGISTRY.get(row)
  return entry is not None and entry.chain in ("joint", "iterative") and (
      entry.selection in ("learned", "gabor", "deep", "classes"))


def _best_seed(runs: list[dict], key: str) -> dict:
  """The run of the highest `key`, the lowest seed among ties."""
  return max(runs, key=lambda r: (r[key], -r["seed"]))


def comparisons(results: dict) -> list[tuple[str, str]]:
  """(row, against) pairs of the verdict table: every row against target_only, every
  selective row against joint_random (the same budget: one study, one budget), and
  every pre-training row against the joint row of its selection."""
  rows = list(results["rows"])
  pairs = [(row, BASELINE_ROW) for row in rows if BASELINE_ROW in rows and row != BASELINE_ROW]
  if RANDOM_ROW in rows:
    pairs += [(row, RANDOM_ROW) for row in rows if _is_selective(row)]
  # A sequential row against the joint row of the same selection (pre-train, then
  # fine-tune, against training both at once).
  for row in rows:
    entry = rows_lib.REGISTRY.get(row)
    if entry is not None and entry.chain == "pretrain":
      pairs += [(row, other) for other in rows if other != row and (
          rows_lib.REGISTRY.get(other) is not None
          and rows_lib.REGISTRY[other].selection == entry.selection
          and rows_lib.REGISTRY[other].chain == "joint")]
  return pairs


def compare(results: dict, row: str, against: str, split: str) -> dict | None:
  """verdict.difference of `row` minus `against` in top-1 on `split` over their common
  seeds: paired by image when both carry per-image results of the same images, else
  verdict.difference_unpaired with the split's image count; None when either row lacks
  the split or they share no seed, or the image count is unknown."""
  key = top1_key(results, split)
  a, b = _runs_by_seed(results, row), _runs_by_seed(results, against)
  seeds = sorted(s for s in set(a) & set(b) if key in a[s] and key in b[s])
  if not seeds:
    return None
  view_key = key.rsplit("/", 1)[0]
  images = results.get("split_images", {}).get(split)
  records = [run.get("correct", {}).get(view_key) for s in seeds for run in (a[s], b[s])]
  if images and all(records):
    correct = np.array([metrics.unpack_correct(r, images) for r in records])
    result = verdict.difference(correct[0::2], correct[1::2])
  elif images:
    result = verdict.difference_unpaired([a[s][key] for s in seeds],
                                         [b[s][key] for s in seeds], images)
  else:
    return None
  return {**result, "row": row, "against": against, "split": split, "seed_list": seeds}


def verdicts(results: dict) -> list[dict]:
  """compare() of every pair of `comparisons` on every split the study reports."""
  found = [compare(results, row, against, split) for row, against in comparisons(results)
           for split in results["config"]["eval_splits"]]
  return [v for v in found if v is not None]


def _title(name: str, titles: dict) -> str:
  return titles.get(name, name)


def per_seed_markdown(results: dict, titles: dict) -> str:
  """A table of every row's top-1 per seed on every split."""
  splits = results["config"]["eval_splits"]
  lines = ["| row | seed | " + " | ".join(f"{s} top-1 %" for s in splits) + " |",
           "|---|---|" + "---|" * len(splits)]
  for name, row in results["rows"].items():
    for run in row["runs"]:
      cells = [f"{run[top1_key(results, s)] * 100:.1f}" if top1_key(results, s) in run
               else "" for s in splits]
      lines.append(f"| {_title(name, titles)} | {run['seed']} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def verdict_markdown(results: dict, titles: dict) -> str:
  """The verdict table: difference in top-1 points, its 95% interval, the reading."""
  lines = ["| row | against | split | difference (points) | 95% interval | reading | seeds | "
           "images | split error |", "|---|---|---|---|---|---|---|---|---|"]
  for v in verdicts(results):
    lines.append(f"| {_title(v['row'], titles)} | {_title(v['against'], titles)} | "
                 f"{v['split']} | {v['mean'] * 100:+.1f} | [{v['low'] * 100:+.1f}, "
                 f"{v['high'] * 100:+.1f}] | {v['reading']} | {v['seeds']} | "
                 f"{v['images']:,} | {'paired' if v['paired'] else 'unpaired'} |")
  return "\n".join(lines)


def markdown(results: dict, titles: dict | None = None) -> str:
  """The sections results.md carries below the table (between BEGIN and END): best
  row, per seed, verdicts."""
  titles = titles or {}
  try:
    best = best_row(results)
  except ValueError as error:  # a study read on its test split only
    text = [f"No best row: {error}."]
  else:
    test = ("the test split is not read yet" if best["test"] is None else
            f"test {best['test'] * 100:.1f}")
    text = [f"Best row on {best['validation_split']}: **{_title(best['row'], titles)}** "
            f"({best['validation'] * 100:.1f}; its best seed {best['seed']}); {test}."]
  text += ["", "Per seed (top-1 %):", "", per_seed_markdown(results, titles), ""]
  table = verdict_markdown(results, titles)
  if table.count("\n") > 1:
    text += ["Verdicts: each row minus target only, each selective row minus joint random "
             "(same budget); 95% intervals count the seeds' spread and the split's sampling "
             "('paired': over the same images; 'unpaired': per-image results not stored, "
             "wider). helps / hurts: the interval excludes 0.", "", table, ""]
  return "\n".join([BEGIN, "", *text, END])


def with_block(text: str, block: str) -> str:
  """`text` (a results.md) with its BEGIN ... END block replaced by `block` (a
  `markdown`), or `block` appended when it has none."""
  pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
  if pattern.search(text):
    return pattern.sub(lambda _: block, text)
  return text.rstrip("\n") + "\n\n" + block + "\n"


def chosen_run(results: dict, study_dir: str, row: str = "", seed: int | None = None) -> dict:
  """The run a user exports from a study: `row` and `seed` when named (the row's seed
  best on validation when only the row is), else best_row's, whose test split must be
  read (the final table comes before the export).

  Returns:
    {"row", "seed", "run_dir": the run folder under study_dir, "validation", "test"
    (None when not read), "why": a sentence saying how it was chosen}.
  Raises:
    ValueError: naming what is missing: a row not in the study, a seed not trained, the
    test split not read yet.
  """
  where = f"{study_dir}/results.json"
  split = validation_split(results)
  key, test_key = top1_key(results, split), top1_key(results, TEST_SPLIT)
  if row:
    if row not in results["rows"]:
      raise errors.InputError(f"{where}: row {row!r} is not trained in this study; its rows: "
                              f"{', '.join(results['rows'])}")
    runs = _runs_by_seed(results, row)
    if seed is None:
      seed = _best_seed(list(runs.values()), key)["seed"]
      why = f"row {row} as named, its seed best on {split}"
    elif seed not in runs:
      raise errors.InputError(f"{where}: row {row!r} has no trained seed {seed}; its seeds: "
                              f"{', '.join(map(str, sorted(runs)))}")
    else:
      why = f"row {row} and seed {seed} as named"
  else:
    if seed is not None:
      raise errors.InputError("--seed needs --row (the best row on validation picks its own seed)")
    best = best_row(results)
    if best["test"] is None:
      raise errors.InputError(
          f"{where}: the test split is not read yet; read it once (sjft-reproduce with the "
          f"same flags and --eval_splits={split},test) before exporting the best row, or name "
          f"--row")
    row, seed = best["row"], best["seed"]
    why = f"the best row on {split}, its best seed"
  run = _runs_by_seed(results, row)[seed]
  output_dir = results["config"]["output_dir"]
  return {"row": row, "seed": seed, "why": why,
          "run_dir": os.path.join(study_dir, os.path.relpath(run["run_dir"], output_dir)),
          "validation": run[key], "test": run.get(test_key)}
