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

_README = flags.DEFINE_string("readme", "README.md", "The README whose answer block is rewritten.")
_OUTPUT = flags.DEFINE_string("output_dir", "results", "Where answer.md and answer.png go.")

NO_SOURCE = ("target_only", "l2sp", "linear_probe", "lp_ft")
SELECTIVE = ("selective_learned", "selective_gabor", "selective_learned_iterative",
             "selective_deep", "selective_classes")
BEGIN, END = "<!-- answer table: tools/answer_table.py -->", "<!-- end of answer table -->"


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
ROW_NAMES = {"target_only": "fine-tune", "l2sp": "L2-SP", "linear_probe": "linear probe",
             "lp_ft": "LP-FT", "selective_learned": "learned bank",
             "selective_gabor": "Gabor bank", "selective_learned_iterative": "iterative",
             "selective_deep": "deep features", "selective_classes": "deep class means"}


def study_rows(study: Study, root: str = ".") -> dict | None:
  """{row: row summary} of a study's files (None when its first file is absent)."""
  rows = {}
  for path in study.results:
    full = os.path.join(root, path)
    if not os.path.exists(full):
      if path == study.results[0]:
        return None
      continue
    renames = {old: new for file, old, new in study.rename if file == path}
    for name, row in files.read_json(full)["rows"].items():
      rows[renames.get(name, name)] = row
  return rows


def answer(study: Study, rows: dict) -> dict:
  """The study's four cells: each {"row", "mean", "std", "seeds"} on the reported split
  (test when read, else validation), best rows chosen on validation."""
  reported = "test" if any("test/centre/top1" in r for r in rows.values()) else study.validation
  chosen_key, reported_key = (f"{study.validation}/centre/top1", f"{reported}/centre/top1")

  def best(names):
    present = [n for n in names if n in rows and chosen_key in rows[n]]
    if not present:
      return None
    name = max(present, key=lambda n: rows[n][chosen_key]["mean"])
    cell = rows[name][reported_key]
    return {"row": name, "mean": cell["mean"], "std": cell["std"],
            "seeds": len(cell["values"])}

  return {"split": reported, "fine-tune": best(["target_only"]),
          "best no-source": best(NO_SOURCE), "joint, random": best(["joint_random"]),
          "joint, all": best(["joint_all"]), "best selective": best(SELECTIVE)}


COLUMNS = ("fine-tune", "best no-source", "joint, random", "joint, all", "best selective")


def markdown(answers: list[tuple[Study, dict]]) -> str:
  lines = ["| target, base | split | " + " | ".join(COLUMNS) + " | seeds |",
           "|---|---|" + "---|" * len(COLUMNS) + "---|"]
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
                 + f" | {'/'.join(map(str, seeds))} |")
  return "\n".join(lines)


def figure(answers: list[tuple[Study, dict]], path: str) -> None:
  plt = files.pyplot()
  fig, ax = plt.subplots(figsize=(10, 4.2))
  width = 0.8 / len(COLUMNS)
  for j, column in enumerate(COLUMNS):
    xs, means, stds = [], [], []
    for i, (_, cells) in enumerate(answers):
      if cells[column] is not None:
        xs.append(i + (j - (len(COLUMNS) - 1) / 2) * width)
        means.append(cells[column]["mean"] * 100)
        stds.append(cells[column]["std"] * 100)
    ax.bar(xs, means, width, yerr=stds, capsize=2, label=column)
  ax.set_xticks(range(len(answers)))
  ax.set_xticklabels([f"{s.title.replace(', ', chr(10), 1)}\n({c['split']})"
                      for s, c in answers], fontsize=7)
  ax.set_ylabel("top-1 % (mean ± std over seeds)")
  ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
  ax.set_title("Does borrowing pay? Every study, best rows chosen on validation")
  fig.tight_layout()
  files.save_figure_atomic(fig, path)


def with_block(readme: str, block: str) -> str:
  """README with the text between the answer markers replaced by `block`."""
  pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
  if not pattern.search(readme):
    raise ValueError(f"README has no {BEGIN} ... {END} block")
  return pattern.sub(lambda _: f"{BEGIN}\n\n{block}\n\n{END}", readme)


def main(argv):
  del argv
  answers = [(s, answer(s, rows)) for s in STUDIES if (rows := study_rows(s)) is not None]
  table = markdown(answers)
  print(table)
  files.write_text_atomic(os.path.join(_OUTPUT.value, "answer.md"), table + "\n")
  figure(answers, os.path.join(_OUTPUT.value, "answer.png"))
  with open(_README.value) as f:
    readme = f.read()
  files.write_text_atomic(_README.value, with_block(readme, table))


if __name__ == "__main__":
  app.run(main)
