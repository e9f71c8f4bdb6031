r"""Writes a demo run's summary into README.md, as `sjft-run` printed it: the README's
demo block is produced by the code it documents, never typed by hand.

  make demo && python -m tools.update_readme_demo        # after a fresh demo run

Copies runs/demo/run_report.json to results/demo/run_report.json (kept with the
repository; tests/test_tools.py checks that README's block is `run.summary` of it) and
replaces the indented block between the README markers
`<!-- demo summary: tools/update_readme_demo.py -->` and `<!-- end of demo summary -->`.
"""

import os
import re
import shutil

from absl import app, flags

from sjft_tf import files

_REPORT = flags.DEFINE_string("report", "runs/demo/run_report.json", "The demo run's report.")
_README = flags.DEFINE_string("readme", "README.md", "The README to update.")
_KEPT = flags.DEFINE_string("kept", "results/demo/run_report.json", "Where the report is kept.")

BEGIN = "<!-- demo summary: tools/update_readme_demo.py -->"
END = "<!-- end of demo summary -->"


def demo_block(report: dict) -> str:
  """The README block of a run report: `sjft-run`'s summary, indented as code."""
  from sjft_tf.cli import run  # pylint: disable=g-import-not-at-top
  return "\n".join("    " + line for line in run.summary(report).splitlines())


def with_block(readme: str, block: str) -> str:
  """`readme` with the text between the markers replaced by `block`."""
  pattern = re.compile(re.escape(BEGIN) + r"\n.*?\n" + re.escape(END), re.S)
  if not pattern.search(readme):
    raise ValueError(f"README has no {BEGIN} ... {END} block")
  return pattern.sub(lambda _: f"{BEGIN}\n\n{block}\n\n{END}", readme)


def main(argv):
  del argv
  report = files.read_json(_REPORT.value)
  os.makedirs(os.path.dirname(_KEPT.value), exist_ok=True)
  shutil.copyfile(_REPORT.value, _KEPT.value)
  with open(_README.value) as f:
    readme = f.read()
  files.write_text_atomic(_README.value, with_block(readme, demo_block(report)))
  print(f"{_README.value}: demo summary of {_REPORT.value}")


if __name__ == "__main__":
  app.run(main)
