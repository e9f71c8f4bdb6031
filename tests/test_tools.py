"""The command lines, run as a user runs them: console scripts and python -m."""

import json
import os
import subprocess
import sys

import numpy as np

from sjft_tf.data import spec as spec_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)


def _run(args, **kwargs):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
                        **kwargs)


def test_demo_data_then_ingest_from_the_console_scripts(tmp_path):
  images = tmp_path / "images"
  made = _run([os.path.join(BIN, "sjft-make-demo-data"), f"--output_dir={images}",
               "--source_images_per_class=3", "--num_target_classes=2",
               "--target_split_sizes=train=2,test=1"])
  assert made.returncode == 0, made.stderr
  with open(images / "generator.json") as f:
    related = json.load(f)["related_source_classes"]
  assert all(f"{t} <- {r[0]}" in made.stdout for t, r in related.items())

  out = tmp_path / "target"
  ingested = _run([os.path.join(BIN, "sjft-ingest"), f"--input_root={images / 'target'}",
                   f"--output_dir={out}", f"--metadata_json={images / 'generator.json'}",
                   "--noprogress"])
  assert ingested.returncode == 0, ingested.stderr
  assert "dataset target: 2 classes" in ingested.stdout
  assert "train: 4 examples, 1 shards, 2-2 per class" in ingested.stdout
  spec = spec_lib.load_spec(str(out))
  assert spec.metadata["related_source_classes"] == related
  assert spec.splits["test"].class_counts == [1, 1]


def test_python_m_ingest_reports_skips_and_refuses_two_inputs(tmp_path):
  root = tmp_path / "in" / "train" / "a"
  os.makedirs(root)
  from PIL import Image
  Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "ok.png")
  (root / "broken.jpg").write_bytes(b"\xff\xd8\xff")
  done = _run([sys.executable, "-m", "sjft_tf.cli.ingest", f"--input_root={tmp_path / 'in'}",
               f"--output_dir={tmp_path / 'out'}", "--noprogress"])
  assert done.returncode == 0, done.stderr
  assert "skipped 1 inputs" in done.stdout and "broken.jpg: not a readable image" in done.stdout

  both = _run([sys.executable, "-m", "sjft_tf.cli.ingest", f"--input_root={tmp_path / 'in'}",
               f"--input_csv={tmp_path / 'x.csv'}", f"--output_dir={tmp_path / 'o2'}"])
  assert both.returncode != 0
  assert "give exactly one of --input_root, --input_csv, --tfds_name" in both.stderr


def test_user_errors_are_one_line_naming_the_file_and_exit_2(tmp_path):
  (tmp_path / "header_only.csv").write_text("path,label\n")
  cases = [
      (["sjft-ingest", f"--input_root={tmp_path / 'missing'}", f"--output_dir={tmp_path / 'o'}"],
       f"sjft-ingest: error: input root {tmp_path / 'missing'} does not exist"),
      (["sjft-ingest", f"--input_csv={tmp_path / 'header_only.csv'}",
        f"--output_dir={tmp_path / 'o'}"],
       f"sjft-ingest: error: {tmp_path / 'header_only.csv'}: no rows after the header"),
      (["sjft-eval", f"--run_dir={tmp_path / 'nothing'}", f"--spec_dir={tmp_path}"],
       f"sjft-eval: error: {tmp_path / 'nothing'} is not a finished sjft-train run"),
  ]
  for (tool, *args), expected in cases:
    done = _run([os.path.join(BIN, tool), *args])
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(expected)
  # The traceback on request.
  done = _run([os.path.join(BIN, "sjft-ingest"), f"--input_root={tmp_path / 'missing'}",
               f"--output_dir={tmp_path / 'o'}", "--verbosity=1"])
  assert done.returncode != 0 and "Traceback" in done.stderr


def test_readme_demo_summary_is_what_sjft_run_printed():
  """README's demo block is `run.summary` of the kept demo report, written by
  tools/update_readme_demo.py (issue 23: it had gone stale by hand)."""
  sys.path.insert(0, REPO)
  from tools import update_readme_demo  # pylint: disable=g-import-not-at-top
  with open(os.path.join(REPO, "results", "demo", "run_report.json")) as f:
    report = json.load(f)
  with open(os.path.join(REPO, "README.md")) as f:
    readme = f.read()
  assert update_readme_demo.with_block(readme, update_readme_demo.demo_block(report)) == readme
  assert "selective   centre top-1" in update_readme_demo.demo_block(report)
