"""sjft-reproduce on a small ingested folder target (not a preset): only the requested
rows' selections are built, every partial-source row has the stated budget, and the
table reports validation and test with top-1 and mean per-class accuracy."""

import json
import os
import subprocess
import sys

import numpy as np

from sjft_tf.selection import manifest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)


def _run(tool, *flags, cwd=REPO):
  done = subprocess.run([os.path.join(BIN, tool), *flags], cwd=cwd, capture_output=True,
                        text=True, timeout=600,
                        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
  assert done.returncode == 0, done.stderr[-4000:]
  return done


def test_reproduce_on_a_folder_target_with_a_subset_of_rows(tmp_path):
  d = tmp_path
  _run("sjft-make-demo-data", f"--output_dir={d / 'images'}", "--image_size=64",
       "--source_images_per_class=8", "--num_target_classes=3",
       "--target_split_sizes=train=4,val=3,test=3")
  for role in ("source", "target"):
    _run("sjft-ingest", f"--input_root={d / 'images' / role}", f"--output_dir={d / role}",
         f"--dataset_name=demo_{role}", "--noprogress")
  _run("sjft-descriptors", f"--target_dir={d / 'target'}", f"--source_dir={d / 'source'}",
       f"--output_dir={d / 'descriptors'}", "--bank=gabor", "--resize_size=64",
       "--crop_size=64", "--lookup_cells=1024", "--noprogress")
  # --method=classes from the command line (deep: test_semantic's deep_selection, ScaNN).
  _run("sjft-select", f"--descriptors_dir={d / 'descriptors'}", f"--output_dir={d / 'classes'}",
       "--method=classes", "--budget_images=40", "--k0=3", "--max_neighbours=60",
       "--min_images_per_class=2", "--feature_weights=", "--feature_input_size=32",
       "--nowrite_subset")
  chosen = manifest.load(str(d / "classes" / "round_000"))
  assert (d / "classes" / "round_000" / "class_report.json").exists()
  # Whole classes of 8 images until 40 are reached: 5 classes.
  assert len(chosen.selected) == 40 and len(chosen.retained_classes) == 5
  budget = 40
  done = _run("sjft-reproduce", f"--output_dir={d / 'out'}", f"--target_dir={d / 'target'}",
              f"--learned_descriptors={d / 'descriptors'}",
              "--rows=target_only,joint_random,selective_classes",
              "--seeds=0,1", f"--budget_images={budget}", "--max_neighbours=60", "--min_images_per_class=2",
              "--eval_splits=val,test", "--weights=", "--feature_weights=", "--alpha=0.25",
              "--input_size=32", "--resize_size=36", "--batch_size=8", "--total_steps=4",
              "--steps_per_epoch=2")
  out = d / "out"
  # Only the requested rows' selections: no Gabor, no "all" (692 MB on Flowers).
  names = set(os.listdir(out / "selections"))
  assert {f"classes_{budget}", "learned_ranked", f"random_{budget}_seed0",
          f"random_{budget}_seed1"} <= names
  assert all(n.startswith(("classes_", "learned_", "random_")) for n in names), names
  assert (out / "selections" / f"classes_{budget}" / "round_000" / "class_report.json").exists()
  results = json.loads((out / "results.json").read_text())
  rows = results["rows"]
  assert list(rows) == ["target_only", "joint_random", "selective_classes"]
  assert rows["joint_random"]["selected_images"] <= budget
  assert rows["selective_classes"]["selected_images"] >= budget * 0.5
  for key in ("val/centre/top1", "val/centre/mean_per_class_accuracy", "test/centre/top1",
              "test/centre/mean_per_class_accuracy"):
    assert len(rows["target_only"][key]["values"]) == 2
    np.testing.assert_allclose(rows["target_only"][key]["mean"],
                               np.mean(rows["target_only"][key]["values"]))
  # Each number is the run's own evaluation file.
  run = rows["selective_classes"]["runs"][1]
  with open(os.path.join(run["run_dir"], "evaluation_test.json")) as f:
    assert json.load(f)["views"]["centre"]["top1"] == run["test/centre/top1"]
  # Equal target images: the target-only run's batch is half the joint batch.
  with open(os.path.join(rows["target_only"]["runs"][0]["run_dir"], "train_config.json")) as f:
    assert json.load(f)["pairs"]["batch_size"] == 4
  table = (out / "results.md").read_text()
  assert "val top-1 % (centre)" in table and "test mean per class % (centre)" in table
  assert "K0 |" not in table  # no sweep asked for
  assert table.strip() in done.stdout
