"""README's quick start ("your own images"), followed verbatim at small sizes.

The section's commands run as written, in a folder laid out as the clone is (the
template `flags/reproduce/own_target_scratch.flags`) holding `photos/` (a target of
class folders, not a preset) and `catalogue/` (a source); after its `cp` the test
appends to `my_target.flags` the small sizes a user would edit in their copy.
`--weights=imagenet` reads the real MobileNet weights of ../shared through Keras's cache
(KERAS_HOME), as a connected user's download would. The test asserts that the sizes
follow the data (target_epochs, budget_fraction), that only the requested rows'
selections exist, that the table has top-1 and mean per-class accuracy, per-seed numbers
and paired verdicts, that the final call reuses the validation call's runs, and that
`sjft-export --study` exports the row best on validation.
"""

import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np

from sjft_tf.data import spec as spec_lib
from sjft_tf.experiments import policy, summary
from sjft_tf.selection import manifest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
SECTION = "## Quick start: your own images"
TEMPLATE = os.path.join("flags", "reproduce", "own_target_scratch.flags")
# What a user edits in their copy of the template to try it on a toy problem.
SMALL_SIZES = """
--rows=target_only,joint_random,selective_classes
--seeds=0,1
--budget_fraction=0.25
--max_neighbours=60
--min_images_per_class=2
--batch_size=8
--target_epochs=1
--logged_epochs=2
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
  shutil.copy(os.path.join(REPO, TEMPLATE), work / TEMPLATE)

  commands = readme_commands()
  assert [c.split()[0] for c in commands] == [
      "cp", "sjft-ingest", "sjft-ingest", "sjft-descriptors", "sjft-reproduce",
      "sjft-reproduce", "sjft-export"]
  _shell(commands[0], work, env)
  with open(work / "my_target.flags", "a") as f:
    f.write(SMALL_SIZES)
  for command in commands[1:4]:
    _shell(command, work, env)
  _shell(commands[4], work, env)
  out = work / "runs" / "my_comparison"
  first = json.loads((out / "results.json").read_text())
  final_stdout = _shell(commands[5], work, env)
  # 3. The winner exported: the row best on validation, a SavedModel that loads.
  exported = _shell(commands[6], work, env)
  version = out / "export" / "1"
  assert exported.strip().endswith(str(os.path.join("runs", "my_comparison", "export", "1")))
  from sjft_tf.export import serving  # pylint: disable=g-import-not-at-top
  serving.verify_version(str(version))
  best = summary.best_row(json.loads((out / "results.json").read_text()))
  assert exported.startswith(f"{best['row']}, seed {best['seed']} (the best row on val")
  with open(version / "assets.extra" / "sjft_export.json") as f:
    assert json.load(f)["run_dir"].endswith(os.path.join(best["row"], f"seed{best['seed']}"))

  # The sizes follow the data: 18 training images (60% of 3 x 10), 2 a batch, one pass
  # in 2 logged epochs; a quarter of the source for the partial-source rows.
  train_images = spec_lib.load_spec(str(work / "data" / "my_target")).splits["train"].num_examples
  total, per_epoch = policy.schedule(train_images, 2, 1, 2)
  config = first["config"]
  assert (config["train"]["total_steps"], config["train"]["steps_per_epoch"]) == (total, per_epoch)
  sources = spec_lib.load_spec(str(work / "data" / "my_source")).splits["train"].num_examples
  budget = policy.budget_images(sources, 0.25)
  assert config["budget_images"] == budget

  rows_asked = ["target_only", "joint_random", "selective_classes"]
  # Only the requested rows' selections: no Gabor, no deep pools, no "all" (692 MB on
  # Flowers); the learned ranking is the base every selection indexes.
  names = set(os.listdir(out / "selections"))
  assert names == {f"classes_{budget}", "learned_ranked", f"random_{budget}_seed0",
                   f"random_{budget}_seed1"}, names
  classes_round = out / "selections" / f"classes_{budget}" / "round_000"
  assert (classes_round / "class_report.json").exists()
  # Whole source classes of 8 images until the budget is reached.
  chosen = manifest.load(str(classes_round))
  assert len(chosen.selected) == 8 * len(chosen.retained_classes) >= budget

  results = json.loads((out / "results.json").read_text())
  rows = results["rows"]
  assert list(rows) == rows_asked
  # Random: the budget, less images of classes left with under 2 (no source-head output).
  assert 0.75 * budget <= rows["joint_random"]["selected_images"] <= budget
  assert rows["selective_classes"]["selected_images"] == len(chosen.selected)
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
  # Equal target images: the target-only run's batch is the joint batch's target share.
  with open(work / rows["target_only"]["runs"][0]["run_dir"] / "train_config.json") as f:
    assert json.load(f)["pairs"]["batch_size"] == 2
  table = (out / "results.md").read_text()
  assert "val top-1 % (centre)" in table and "test mean per class % (centre)" in table
  # Per seed and the verdicts, paired over the same images of each split.
  assert f"| selective, deep class means | 1 | {rows['selective_classes']['runs'][1]['val/centre/top1'] * 100:.1f} |" in table
  found = summary.verdicts(results)
  assert {(v["row"], v["against"], v["split"]) for v in found} == {
      (row, against, split) for row, against in (
          ("joint_random", "target_only"), ("selective_classes", "target_only"),
          ("selective_classes", "joint_random")) for split in ("val", "test")}
  assert all(v["paired"] and v["seeds"] == 2 for v in found)
  assert results["split_images"] == {"val": 6, "test": 6}
  assert "K0 |" not in table  # no sweep asked for
  assert table.strip() in final_stdout
  # A study in progress: a third seed asked for is tabulated only where complete, and
  # nothing is trained.
  _shell(commands[5] + " --seeds=0,1,2 --complete_runs_only", work, env)
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
  _shell(commands[5] + " --seeds=0,1,2 --complete_runs_only", work, env)
  partial = json.loads((out / "results.json").read_text())["rows"]
  assert [r["seed"] for r in partial["target_only"]["runs"]] == [0]
  assert [r["seed"] for r in partial["joint_random"]["runs"]] == [1]
  # Each run records its first round, the same path whether trained or read back.
  assert partial["selective_classes"]["runs"][0]["first_round"] == rows[
      "selective_classes"]["runs"][0]["first_round"] == os.path.join(
          "runs", "my_comparison", "selections", f"classes_{budget}", "round_000")


def test_readme_fallback_and_both_templates_validate(tmp_path):
  """README's no-source fallback (with the pretrained template, as it says) and both
  templates parse and validate their configs (--prepare_only: nothing is read)."""
  text = open(os.path.join(REPO, "README.md")).read()
  fallback = next(line.strip() for line in text[text.index(SECTION):].splitlines()
                  if "--rows=target_only,l2sp" in line)
  for template, extra in (("own_target_pretrained.flags", fallback.split()[2:]),
                          ("own_target_pretrained.flags", []),
                          ("own_target_scratch.flags", [])):
    shutil.copy(os.path.join(REPO, "flags", "reproduce", template), tmp_path / "my_target.flags")
    done = subprocess.run([os.path.join(BIN, "sjft-reproduce"), "--flagfile=my_target.flags",
                           *extra, "--prepare_only"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, env=_env(tmp_path / "keras"))
    assert done.returncode == 0, (template, extra, done.stderr[-2000:])
    assert "prepared in" in done.stdout
  # The old failure: the probe rows without a warm-up are refused by name.
  done = subprocess.run([os.path.join(BIN, "sjft-reproduce"), "--flagfile=my_target.flags",
                         "--rows=target_only,lp_ft", "--prepare_only"], cwd=tmp_path,
                        capture_output=True, text=True, timeout=300, env=_env(tmp_path))
  assert done.returncode == 2 and "rows ['lp_ft'] need a head warm-up" in done.stderr
