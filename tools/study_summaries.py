"""The per-seed numbers, verdicts and best row (sjft_tf.experiments.summary) of studies
already tabulated: writes each results.md's summary block again from its results.json.

  python -m tools.study_summaries results/*/results.json results/*/*/results.json

A results.json without the split sizes (written before they were recorded) gets them
from its target's dataset spec (config.train.target_spec_dir, e.g. data/flowers102:
ingest it first), recorded in the file so that the next call needs no data. A study of
the first format (one test split, views as row keys) is read in the current one.
Studies of earlier versions carry no per-image results: their intervals are the
unpaired ones (summary.py), which are wider.
"""

import os

from absl import app

from sjft_tf import files
from sjft_tf.data import spec as spec_lib
from sjft_tf.experiments import ablation, summary


def current_format(results: dict) -> dict:
  """A results.json of the first format (config.test_split, rows keyed by view) in the
  current one (config.eval_splits, rows and runs keyed split/view/metric); a current
  one as it is."""
  config = results["config"]
  if "eval_splits" in config:
    return results
  split, views = config["test_split"], config["views"]
  rows = {}
  for name, row in results["rows"].items():
    runs = [{**run, **{f"{split}/{view}/top1": run[view] for view in views if view in run}}
            for run in row["runs"]]
    rows[name] = {**row, "runs": runs,
                  **{f"{split}/{view}/top1": row[view] for view in views if view in row}}
  return {**results, "rows": rows, "config": {**config, "eval_splits": [split]}}


def split_images(results: dict) -> dict:
  """{split: images} of the study's splits, from its target's spec."""
  config = results["config"]
  spec_dir = config["train"]["target_spec_dir"]
  spec = spec_lib.load_spec(spec_dir)
  return {split: spec.split(split).num_examples for split in config["eval_splits"]}


def rewrite(path: str) -> str:
  """Records the split sizes in `path` (a results.json) when missing and writes the
  summary block of the results.md beside it; returns that block."""
  stored = files.read_json(path)
  if "split_images" not in stored:
    stored["split_images"] = split_images(current_format(stored))
    files.write_json_atomic(path, stored)
  block = summary.markdown(current_format(stored), ablation.ROW_TITLES)
  table = os.path.join(os.path.dirname(path), "results.md")
  with open(table) as f:
    text = f.read()
  files.write_text_atomic(table, summary.with_block(text, block))
  return block


def main(argv):
  for path in argv[1:]:
    rewrite(path)
    print(f"{path}: summary written to {os.path.join(os.path.dirname(path), 'results.md')}")


if __name__ == "__main__":
  app.run(main)
