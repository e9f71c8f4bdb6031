r"""Gathers several sjft-reproduce outputs (one per lever setting) into one table of
validation accuracy, mean and std over seeds, and names the best setting of each row.

  python -m tools.lever_table --key=pool/centre/top1 --output=results/oxford_pets/levers.md \
      base=runs/levers_pets/base head10=runs/levers_pets/head10 ...
"""

import json
import os

from absl import app, flags

from sjft_tf import files
from sjft_tf.experiments import ablation, figures

_KEY = flags.DEFINE_string("key", "pool/centre/top1", "The number compared (split/view/metric).")
_OUTPUT = flags.DEFINE_string("output", None, "Markdown file to write (also printed).")
_TITLE = flags.DEFINE_string("title", "Lever study", "Heading of the table.")
_CURVES = flags.DEFINE_string("curves", None, "PNG of every run's validation curve (target_validation_accuracy against batches), all settings.")
_REPORT = flags.DEFINE_list("report_keys", [], "Also give these numbers (e.g. test/centre/top1) of each row at its best setting: the final table.")


def lever_table(settings: dict, key: str) -> tuple[str, dict]:
  """(markdown table, {row: best setting}) of `key` for each setting and row.

  Args:
    settings: setting name -> results.json contents of an sjft-reproduce output.
  """
  rows = [r for r in ablation.ROWS if any(r in s["rows"] for s in settings.values())]
  best = {}
  lines = ["| setting | " + " | ".join(ablation.ROW_TITLES[r] for r in rows) + " |",
           "|---|" + "---|" * len(rows)]
  for name, result in settings.items():
    cells = []
    for row in rows:
      summary = result["rows"].get(row, {}).get(key)
      if summary is None:
        cells.append("")
        continue
      cells.append(f"{summary['mean'] * 100:.1f} ± {summary['std'] * 100:.1f} "
                   f"(n={len(summary['values'])})")
      if row not in best or summary["mean"] > best[row][1]:
        best[row] = (name, summary["mean"])
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
  lines += ["", "Best setting of each row (by the mean): " + ", ".join(
      f"{ablation.ROW_TITLES[r]}: {best[r][0]} ({best[r][1] * 100:.1f})" for r in rows)]
  return "\n".join(lines), {r: b[0] for r, b in best.items()}


def final_table(settings: dict, best: dict, keys: list) -> str:
  """Each row at the setting chosen for it: the numbers of `keys`, mean ± std."""
  lines = ["| row | setting (chosen on validation) | " + " | ".join(keys)
           + " | seeds | source images |", "|---|---|" + "---|" * len(keys) + "---|---|"]
  for row, name in best.items():
    result = settings[name]["rows"][row]
    cells = [f"{result[k]['mean'] * 100:.1f} ± {result[k]['std'] * 100:.1f}" for k in keys]
    lines.append(f"| {ablation.ROW_TITLES[row]} | {name} | " + " | ".join(cells)
                 + f" | {len(result[keys[0]]['values'])} | {result['selected_images']} |")
  return "\n".join(lines)


def main(argv):
  settings = {}
  for item in argv[1:]:
    name, folder = item.split("=", 1)
    with open(os.path.join(folder, "results.json")) as f:
      settings[name] = json.load(f)
  table, best = lever_table(settings, _KEY.value)
  text = f"# {_TITLE.value}\n\n{_KEY.value}, % (mean ± std over seeds)\n\n{table}\n"
  if _REPORT.value:
    text += ("\n## Each row at its chosen setting\n\n"
             + final_table(settings, best, [_KEY.value] + _REPORT.value) + "\n")
  if _CURVES.value:
    histories = {
        f"{name}: {row} seed {run['seed']}": (
            os.path.join(run["run_dir"], "history.csv"),
            result["config"]["train"]["steps_per_epoch"])
        for name, result in settings.items() for row, summary in result["rows"].items()
        for run in summary["runs"]}
    figures.validation_curves(histories, _CURVES.value, f"{_KEY.value.split('/')[0]} split")
  if _OUTPUT.value:
    files.write_text_atomic(_OUTPUT.value, text)
  print(text)


if __name__ == "__main__":
  app.run(main)
