"""sjft-run: every stage from one command, a report that matches the stages' files, and
a rerun that reuses them."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from sjft_tf.evaluation import evaluate
from sjft_tf.selection import manifest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)


def _flagfile(path, **values) -> str:
  path.write_text("".join(f"--{k}={v}\n" for k, v in values.items()))
  return str(path)


def test_one_command_runs_every_stage_and_a_rerun_resumes(tmp_path):
  d = tmp_path
  # 64 px images: the Gabor bank needs 48 px or more (GaborBank.min_image_size).
  files = {
      "demo_data_flagfile": _flagfile(
          d / "demo.flags", output_dir=d / "images", image_size=64, source_images_per_class=6,
          num_target_classes=3, target_split_sizes="train=4,test=3"),
      "ingest_flagfiles": ",".join(
          _flagfile(d / f"ingest_{role}.flags", input_root=d / "images" / role,
                    output_dir=d / "data" / role, dataset_name=f"demo_{role}",
                    metadata_json=d / "images" / "generator.json", noprogress="")
          for role in ("source", "target")),
      "descriptors_flagfile": _flagfile(
          d / "descriptors.flags", target_dir=d / "data" / "target",
          source_dir=d / "data" / "source", output_dir=d / "descriptors", bank="gabor",
          resize_size=64, crop_size=64, lookup_cells=1024, noprogress=""),
      "select_flagfile": _flagfile(
          d / "select.flags", descriptors_dir=d / "descriptors", output_dir=d / "selection",
          k0=3, max_neighbours=30, min_images_per_class=2),
      "train_flagfile": _flagfile(
          d / "train.flags", first_round=d / "selection" / "round_000", output_dir=d / "train",
          base="MobileNet", alpha=0.25, weights="", input_size=32, resize_size=36,
          batch_size=8, total_steps=8, steps_per_epoch=4, epochs_per_round=1,
          strategy="one_device", verbose=0),
      "eval_flagfile": _flagfile(d / "eval.flags", run_dir=d / "train",
                                 spec_dir=d / "data" / "target", split="test"),
      "export_flagfile": _flagfile(d / "export.flags", run_dir=d / "train",
                                   export_dir=d / "export"),
  }
  # noprogress takes no value: absl reads "--noprogress=" as an error, so drop "=".
  for name in ("ingest_source.flags", "ingest_target.flags", "descriptors.flags"):
    (d / name).write_text((d / name).read_text().replace("--noprogress=", "--noprogress"))
  with open(d / "train.flags", "a") as f:
    f.write("--target_batch_norm_for_levels\n")
  command = [os.path.join(BIN, "sjft-run"), f"--output_dir={d}"] + [
      f"--{k}={v}" for k, v in files.items()]
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                        timeout=600)
  assert done.returncode == 0, done.stderr[-4000:]
  report = json.loads((d / "run_report.json").read_text())
  assert (d / "run_summary.txt").read_text().strip() in done.stdout

  for name, run_dir in (("selective", d / "train"), ("target_only", d / "train_target_only")):
    with open(evaluate.result_paths(str(run_dir), "test")[0]) as f:
      views = json.load(f)["views"]
    assert report["accuracy"][name]["centre"]["top1"] == views["centre"]["top1"]
  first = manifest.load(str(d / "selection" / "round_000"))
  assert report["selection"]["round_0"]["selected_images"] == len(first.selected)
  last = manifest.load(str(d / "train" / "rounds" / "round_001"))
  assert report["selection"]["last_round"]["selected_images"] == len(last.selected)
  with np.load(d / "train" / "rounds" / "predictions_after_round_000.npz") as p:
    order = {i: n for n, i in enumerate(p["ids"].tolist())}
    predicted = p["probabilities"][[order[i] for i in last.target_ids.tolist()]].argmax(1)
  assert report["selection"]["last_round"]["level_predictions_accuracy"] == pytest.approx(
      np.mean(predicted == last.target_labels))
  generator = json.loads((d / "images" / "generator.json").read_text())
  related = {n for names in generator["related_source_classes"].values() for n in names}
  in_related = np.array([first.source_class_names[label] in related
                         for label in first.source_labels[first.selected]])
  assert report["selection"]["round_0"]["related"]["from_related_classes"] == in_related.sum()
  assert report["export"] == str(d / "export" / "1")
  assert set(report["seconds"]) >= {"demo data", "ingest 0", "ingest 1", "descriptors",
                                    "selection", "training", "evaluation",
                                    "baseline training", "baseline evaluation", "export"}

  # A rerun reuses every stage's output: same model, same round 0, no new export.
  model = d / "train" / "model.keras"
  stamps = [os.path.getmtime(p) for p in (model, d / "selection" / "round_000" /
                                          manifest.ARRAYS_FILENAME)]
  again = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=600)
  assert again.returncode == 0, again.stderr[-4000:]
  assert [os.path.getmtime(p) for p in (model, d / "selection" / "round_000" /
                                        manifest.ARRAYS_FILENAME)] == stamps
  assert sorted(n for n in os.listdir(d / "export") if not n.startswith(".")) == ["1"]
  assert "export" not in json.loads((d / "run_report.json").read_text())["seconds"]
