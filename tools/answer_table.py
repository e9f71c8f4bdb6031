"""README's answer table and figure, from the committed results of every study.

  python -m tools.answer_table            # prints the table, writes results/answer.md,
                                          # results/answer.png and README's block

Per study (a target, a base, a results.json of `sjft-reproduce`): fine-tuning, the best
no-source baseline, joint with a random subset, and the best selective row. "Best" is
chosen on the study's validation split and reported on test (a study whose test split
was not read yet reports validation and says so), mean ± std over its seeds.
"""

import dataclasses
import os
import re

from absl import app, flags

from sjft_tf import files
from sjft_tf.experiments import summary

# Its flags are defined when it runs as a script, so that the tests can import it beside
# tools that define flags of the same names (update_readme_demo's --readme).
_README = _OUTPUT = None


def _define_flags() -> None:
  global _README, _OUTPUT
  _README = flags.DEFINE_string("readme", "README.md", "The README whose answer block is rewritten.")
  _OUTPUT = flags.DEFINE_string("output_dir", "results", "Where answer.md and answer.png go.")

NO_SOURCE = ("target_only", "l2sp", "linear_probe", "lp_ft")
SELECTIVE = ("selective_learned", "selective_gabor", "selective_learned_iterative",
             "selective_deep", "selective_classes")
BEGIN, END = "<!-- answer table: tools/answer_table.py -->", "<!-- end of answer table -->"
CLAIMS_BEGIN, CLAIMS_END = ("<!-- when it pays: tools/answer_table.py -->",
                            "<!-- end of when it pays -->")


@dataclasses.dataclass(frozen=True)
class Study:
  """One comparison: its title, results files (later files add rows, renamed by
  `rename`: {file: {row in file: row}}) and validation split."""
  title: str
  results: tuple[str, ...]
  validation: str
  rename: tuple = ()


STUDIES = (
    Study("Pets, MobileNet 0.25 (ImageNet), 96 px",
          ("results/oxford_pets/results.json", "results/oxford_pets/results_l2sp.json",
           "results/oxford_pets/results_joint_all.json"),
          "pool", (("results/oxford_pets/results_l2sp.json", "target_only", "l2sp"),)),
    Study("Flowers, MobileNet 0.25 (ImageNet), 96 px",
          ("results/flowers102_final/results.json",), "val"),
    Study("Pets, EfficientNet-Lite0 (ImageNet), 128 px",
          ("results/oxford_pets_lite0/results.json",), "pool"),
    Study("Flowers, EfficientNet-Lite0 (ImageNet), 128 px",
          ("results/flowers102_lite0/results.json",), "val"),
    Study("Flowers, CIFAR ResNet-8 from scratch, 32 px",
          ("results/flowers102_scratch_resnet/results.json",), "val"),
    Study("Pets, CIFAR ResNet-8 from scratch, 32 px",
          ("results/oxford_pets_scratch_resnet/results.json",), "pool"),
)
ROW_NAMES = {"target_only": "fine-tune", "joint_all": "joint, all", "joint_random": "joint, random",
             "l2sp": "L2-SP", "linear_probe": "linear probe",
             "lp_ft": "LP-FT", "selective_learned": "learned bank",
             "selective_gabor": "Gabor bank", "selective_learned_iterative": "iterative",
             "selective_deep": "deep features", "selective_classes": "deep class means"}


def study_results(study: Study, root: str = ".") -> dict | None:
  """The study's results.json with the rows of its later files added (renamed), or
  None when its first file is absent."""
  merged = None
  for path in study.results:
    full = os.path.join(root, path)
    if not os.path.exists(full):
      if path == study.results[0]:
        return None
      continue
    stored = files.read_json(full)
    merged = merged or {**stored, "rows": {}}
    renames = {old: new for file, old, new in study.rename if file == path}
    for name, row in stored["rows"].items():
      merged["rows"][renames.get(name, name)] = row
  return merged


def study_rows(study: Study, root: str = ".") -> dict | None:
  """{row: row summary} of a study's files (None when its first file is absent)."""
  results = study_results(study, root)
  return None if results is None else results["rows"]


def answer(study: Study, rows: dict, results: dict | None = None) -> dict:
  """The study's cells: each {"row", "mean", "std", "seeds", "difference": its
  summary.compare with target_only (given `results`)} on the reported split (test when
  read, else validation), best rows chosen on validation; "best": the cell of the row
  best on validation, fine-tuning aside."""
  reported = "test" if any("test/centre/top1" in r for r in rows.values()) else study.validation
  chosen_key, reported_key = (f"{study.validation}/centre/top1", f"{reported}/centre/top1")

  def best(names):
    present = [n for n in names if n in rows and chosen_key in rows[n]]
    if not present:
      return None
    name = max(present, key=lambda n: rows[n][chosen_key]["mean"])
    cell = rows[name][reported_key]
    found = {"row": name, "mean": cell["mean"], "std": cell["std"],
             "seeds": len(cell["values"])}
    if results is not None and name != "target_only":  # its difference from fine-tuning
      found["difference"] = summary.compare(results, name, "target_only", reported)
    return found

  cells = {"split": reported, "fine-tune": best(["target_only"]),
           "best no-source": best(NO_SOURCE), "joint, random": best(["joint_random"]),
           "joint, all": best(["joint_all"]), "best selective": best(SELECTIVE)}
  overall = [cells[c] for c in COLUMNS[1:] if cells[c] and cells[c].get("difference")]
  cells["best"] = max(overall, key=lambda c: rows[c["row"]][chosen_key]["mean"],
                      default=None)
  return cells


COLUMNS = ("fine-tune", "best no-source", "joint, random", "joint, all", "best selective")


def _interval(cell: dict | None) -> str:
  """"+5.4 [+3.4, +7.4] (deep class means)": the best row minus fine-tuning, points."""
  if not cell or not cell.get("difference"):
    return ""
  d = cell["difference"]
  return (f"{d['mean'] * 100:+.1f} [{d['low'] * 100:+.1f}, {d['high'] * 100:+.1f}] "
          f"({ROW_NAMES.get(cell['row'], cell['row'])})")


def markdown(answers: list[tuple[Study, dict]]) -> str:
  lines = ["| target, base | split | " + " | ".join(COLUMNS)
           + " | best minus fine-tune, 95% interval | seeds |",
           "|---|---|" + "---|" * len(COLUMNS) + "---|---|"]
  for study, cells in answers:
    texts = []
    for column in COLUMNS:
      cell = cells[column]
      if cell is None:
        texts.append("")
        continue
      text = f"{cell['mean'] * 100:.1f} ± {cell['std'] * 100:.1f}"
      if column in ("best no-source", "best selective"):
        text += f" ({ROW_NAMES.get(cell['row'], cell['row'])})"
      texts.append(text)
    seeds = sorted({c["seeds"] for c in cells.values() if isinstance(c, dict) and "seeds" in c})
    lines.append(f"| {study.title} | {cells['split']} | " + " | ".join(texts)
                 + f" | {_interval(cells['best'])} | {'/'.join(map(str, seeds))} |")
  return "\n".join(lines)


def figure(answers: list[tuple[Study, dict]], path: str) -> None:
  """Each study's rows as differences from fine-tuning (points), with 95% intervals."""
  plt = files.pyplot()
  fig, ax = plt.subplots(figsize=(11, 4.8))
  columns = COLUMNS[1:]
  width = 0.8 / len(columns)
  for j, column in enumerate(columns):
    xs, means, errors = [], [], [[], []]
    for i, (_, cells) in enumerate(answers):
      d = (cells[column] or {}).get("difference")
      if d is not None:
        xs.append(i + (j - (len(columns) - 1) / 2) * width)
        means.append(d["mean"] * 100)
        errors[0].append((d["mean"] - d["low"]) * 100)
        errors[1].append((d["high"] - d["mean"]) * 100)
    ax.bar(xs, means, width, yerr=errors, capsize=2, label=column)
  ax.axhline(0, color="black", linewidth=0.8)
  ax.set_xticks(range(len(answers)))
  ax.set_xticklabels([f"{s.title.replace(' (', chr(10) + '(').replace(', ', chr(10))}"
                      f"\n({c['split']})" for s, c in answers], fontsize=7)
  ax.set_ylabel("top-1 points minus fine-tuning\n(mean over seeds, 95% interval)")
  ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
  ax.set_title("Does borrowing pay? Each recipe minus fine-tuning, best rows chosen on "
               "validation")
  fig.tight_layout()
  files.save_figure_atomic(fig, path)


def _points(d: dict) -> str:
  return f"{d['mean'] * 100:+.1f} [{d['low'] * 100:+.1f}, {d['high'] * 100:+.1f}]"


def _top1(results: dict, row: str, split: str = "test") -> str:
  return f"{results['rows'][row][f'{split}/centre/top1']['mean'] * 100:.1f}"


def claims(studies: dict) -> str:
  """README's "When it pays" bullets, every number from the studies' results ({title:
  merged results.json}); differences in points with 95% intervals (summary.compare)."""
  lite0 = studies["Flowers, EfficientNet-Lite0 (ImageNet), 128 px"]
  flowers = studies["Flowers, CIFAR ResNet-8 from scratch, 32 px"]
  pets = studies["Pets, CIFAR ResNet-8 from scratch, 32 px"]
  joint = max(("joint_all", "joint_random", "selective_learned", "selective_deep",
               "selective_classes"), key=lambda r: lite0["rows"][r]["val/centre/top1"]["mean"])
  pretrained = [studies[t] for t in studies if "(ImageNet)" in t]
  random_gaps = []
  for results in pretrained:
    best = max((r for r in SELECTIVE if r in results["rows"]),
               key=lambda r: results["rows"][r][f"{summary.validation_split(results)}/centre/top1"]["mean"])
    random_gaps.append(summary.compare(results, best, "joint_random", "test"))
  classes = flowers["rows"]["selective_classes"]["selected_images"]
  compare = summary.compare
  return "\n".join([
      f"* **A pretrained base: the no-source recipes win.** Flowers, EfficientNet-Lite0: "
      f"linear-probe-then-fine-tune (LP-FT) {_top1(lite0, 'lp_ft')} against fine-tuning's "
      f"{_top1(lite0, 'target_only')} ({_points(compare(lite0, 'lp_ft', 'target_only', 'test'))}"
      f" points); the best joint row {_top1(lite0, joint)}.",
      f"* **A pretrained base: selection is no better than a random subset of the same "
      f"size.** Best selective row minus joint random, the {len(pretrained)} pretrained "
      f"studies: " + ", ".join(f"{g['mean'] * 100:+.1f} ({g['reading']})" for g in random_gaps)
      + " points.",
      f"* **From scratch, the source pays.** Flowers, CIFAR ResNet-8: the nearest whole "
      f"source classes by class means ({classes:,} Tiny ImageNet images) "
      f"{_top1(flowers, 'selective_classes')} against target only's "
      f"{_top1(flowers, 'target_only')} "
      f"({_points(compare(flowers, 'selective_classes', 'target_only', 'test'))}); the whole "
      f"source {_top1(flowers, 'joint_all')}.",
      f"* **From scratch, the selection does it, not more data.** Class means minus a random "
      f"subset of the same size: "
      f"{_points(compare(flowers, 'selective_classes', 'joint_random', 'test'))} points; the "
      f"learned bank's selection "
      f"{_points(compare(flowers, 'selective_learned', 'joint_random', 'test'))}; a Gabor "
      f"bank's (nothing pretrained) "
      f"{_points(compare(flowers, 'selective_gabor', 'joint_random', 'test'))}.",
      f"* **The gain depends on the target.** Pets from scratch: class means "
      f"{_top1(pets, 'selective_classes')} against target only's {_top1(pets, 'target_only')}"
      f" ({_points(compare(pets, 'selective_classes', 'target_only', 'test'))}).",
  ])


def with_block(readme: str, block: str, begin: str = BEGIN, end: str = END) -> str:
  """README with the text between the markers replaced by `block`."""
  pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
  if not pattern.search(readme):
    raise ValueError(f"README has no {begin} ... {end} block")
  return pattern.sub(lambda _: f"{begin}\n\n{block}\n\n{end}", readme)


def readme_blocks(root: str = ".") -> tuple[str, str, list]:
  """(the answer table, the claims, the answers) of the committed results under root."""
  studies = {s.title: r for s in STUDIES if (r := study_results(s, root)) is not None}
  answers = [(s, answer(s, studies[s.title]["rows"], studies[s.title]))
             for s in STUDIES if s.title in studies]
  return markdown(answers), claims(studies), answers


def main(argv):
  del argv
  table, bullets, answers = readme_blocks()
  print(table)
  print(bullets)
  files.write_text_atomic(os.path.join(_OUTPUT.value, "answer.md"), table + "\n")
  figure(answers, os.path.join(_OUTPUT.value, "answer.png"))
  with open(_README.value) as f:
    readme = f.read()
  readme = with_block(readme, table)
  files.write_text_atomic(_README.value, with_block(readme, bullets, CLAIMS_BEGIN, CLAIMS_END))


if __name__ == "__main__":
  _define_flags()
  app.run(main)
