"""README's quick start ("your own images"), followed verbatim at small sizes.

The section's commands run as written, in a folder holding `photos/` (a target of
class folders, not a preset) and `catalogue/` (a source), with the template
`flags/reproduce/own_target.flags` plus the small sizes a user would edit in their copy.
`--weights=imagenet` reads the real MobileNet weights of ../shared through Keras's cache
(KERAS_HOME), as a connected user's download would. The test asserts that only the
requested rows' selections exist, that the table has top-1 and mean per-class accuracy,
and that the final call reuses the validation call's runs.
"""

import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np

from sjft_tf.selection import manifest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
SECTION = "## Quick start: your own images"
TEMPLATE = os.path.join("flags", "reproduce", "own_target.flags")
# What a user edits in their copy of the template to try it on a toy problem.
SMALL_SIZES = """
--rows=target_only,joint_random,selective_classes
--seeds=0,1
--budget_images=40
--max_neighbours=60
--min_images_per_class=2
--input_size=32
--resize_size=36
--batch_size=8
--total_steps=4
--steps_per_epoch=2
"""


def readme_commands() -> list[str]:
  """The shell commands of the section's first code block, continuations joined."""
  with open(os.path.join(REPO, "README.md")) as f:
    text = f.read()
  section = text[text.index(SECTION):]
  block = re.search(r"\n\n((?: {4}.*\n|\n)+)", section).group(1)
  joined = re.sub(r"\\\n\s*", " ", block)
  return [line.strip() for line in joined.splitlines()
          if line.strip() and not line.strip().startswith("#")]


def _env(keras_home) -> dict:
  return dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}",
              TF_CPP_MIN_LOG_LEVEL="2", KERAS_HOME=str(keras_home))


def _shell(command: str, cwd, env) -> str:
  done = subprocess.run(command, shell=True, cwd=cwd, capture_output=True, text=True,
                        timeout=600, env=env)
  assert done.returncode == 0, f"{command}\n{done.stderr[-4000:]}"
  return done.stdout


def test_readme_own_target_section_verbatim(tmp_path, shared_data_dir):
  weights = os.path.join(os.path.dirname(shared_data_dir), "weights",
                         "mobilenet_v1_0.25_imagenet", "mobilenet_2_5_224_tf_no_top.h5")
  keras_home = tmp_path / "keras"
  (keras_home / "models").mkdir(parents=True)
  os.symlink(weights, keras_home / "models" / os.path.basename(weights))
  work = tmp_path / "work"
  env = _env(keras_home)
  _shell(f"sjft-make-demo-data --output_dir={tmp_path / 'images'} --image_size=64 "
         "--source_images_per_class=8 --num_target_classes=3 --target_split_sizes=all=10",
         tmp_path, env)
  work.mkdir()
  shutil.move(tmp_path / "images" / "target" / "all", work / "photos")
  shutil.move(tmp_path / "images" / "source", work / "catalogue")
  (work / "flags" / "reproduce").mkdir(parents=True)
  with open(os.path.join(REPO, TEMPLATE)) as f:
    (work / TEMPLATE).write_text(f.read() + SMALL_SIZES)

  commands = readme_commands()
  assert [c.split()[0] for c in commands] == [
      "sjft-ingest", "sjft-ingest", "sjft-descriptors", "sjft-reproduce", "sjft-reproduce",
      "sjft-export"]
  for command in commands[:3]:
    _shell(command, work, env)
  _shell(commands[3], work, env)
  out = work / "runs" / "my_comparison"
  first = json.loads((out / "results.json").read_text())
  final_stdout = _shell(commands[4], work, env)
  # 3. The winner exported: a SavedModel version that loads and answers.
  exported = _shell(commands[5], work, env)
  version = work / "exports" / "mine" / "1"
  assert exported.strip().endswith(str(os.path.join("exports", "mine", "1")))
  from sjft_tf.export import serving  # pylint: disable=g-import-not-at-top
  serving.verify_version(str(version))

  rows_asked = ["target_only", "joint_random", "selective_classes"]
  # Only the requested rows' selections: no Gabor, no deep pools, no "all" (692 MB on
  # Flowers); the learned ranking is the base every selection indexes.
  names = set(os.listdir(out / "selections"))
  assert names == {"classes_40", "learned_ranked", "random_40_seed0", "random_40_seed1"}, names
  classes_round = out / "selections" / "classes_40" / "round_000"
  assert (classes_round / "class_report.json").exists()
  # Whole source classes of 8 images until 40 are reached: 5 classes.
  chosen = manifest.load(str(classes_round))
  assert len(chosen.selected) == 40 and len(chosen.retained_classes) == 5

  results = json.loads((out / "results.json").read_text())
  rows = results["rows"]
  assert list(rows) == rows_asked
  # Random: 40 images, less those of classes left with under 2 (no source-head output).
  assert 30 <= rows["joint_random"]["selected_images"] <= 40
  assert rows["selective_classes"]["selected_images"] == 40
  for key in ("val/centre/top1", "val/centre/mean_per_class_accuracy", "test/centre/top1",
              "test/centre/mean_per_class_accuracy"):
    for name in rows_asked:
      assert len(rows[name][key]["values"]) == 2
      np.testing.assert_allclose(rows[name][key]["mean"], np.mean(rows[name][key]["values"]))
  # The final call evaluated test on the validation call's runs; it trained nothing.
  assert "test/centre/top1" not in first["rows"]["target_only"]
  for name in rows_asked:
    assert [r["train_seconds"] for r in rows[name]["runs"]] == [
        r["train_seconds"] for r in first["rows"][name]["runs"]]
    assert [r["val/centre/top1"] for r in rows[name]["runs"]] == [
        r["val/centre/top1"] for r in first["rows"][name]["runs"]]
  # Each number is the run's own evaluation file.
  run = rows["selective_classes"]["runs"][1]
  with open(work / run["run_dir"] / "evaluation_test.json") as f:
    assert json.load(f)["views"]["centre"]["top1"] == run["test/centre/top1"]
  # Equal target images: the target-only run's batch is half the joint batch.
  with open(work / rows["target_only"]["runs"][0]["run_dir"] / "train_config.json") as f:
    assert json.load(f)["pairs"]["batch_size"] == 4
  table = (out / "results.md").read_text()
  assert "val top-1 % (centre)" in table and "test mean per class % (centre)" in table
  assert "K0 |" not in table  # no sweep asked for
  assert table.strip() in final_stdout
  # A study in progress: a third seed asked for is tabulated only where complete, and
  # nothing is trained.
  _shell(commands[4] + " --seeds=0,1,2 --complete_runs_only", work, env)
  partial = json.loads((out / "results.json").read_text())
  assert list(partial["rows"]) == rows_asked
  for name in rows_asked:
    assert partial["rows"][name]["test/centre/top1"] == rows[name]["test/centre/top1"]
    assert not (out / "runs" / name / "seed2").exists()
  # Nor is anything selected: seed 2's random subset is not drawn.
  assert set(os.listdir(out / "selections")) == names
  # A run whose evaluation is damaged, or of another model, is not complete.
  (out / "runs" / "target_only" / "seed1" / "evaluation_test.json").write_text("{")
  stale = out / "runs" / "joint_random" / "seed0" / "evaluation_test.json"
  stale.write_text(stale.read_text().replace('"model": "', '"model": "0'))
  _shell(commands[4] + " --seeds=0,1,2 --complete_runs_only", work, env)
  partial = json.loads((out / "results.json").read_text())["rows"]
  assert [r["seed"] for r in partial["target_only"]["runs"]] == [0]
  assert [r["seed"] for r in partial["joint_random"]["runs"]] == [1]
  # Each run records its first round, the same path whether trained or read back.
  assert partial["selective_classes"]["runs"][0]["first_round"] == rows[
      "selective_classes"]["runs"][0]["first_round"] == os.path.join(
          "runs", "my_comparison", "selections", "classes_40", "round_000")
