"""The comparison's sizes as policies (policy.py) and its verdicts (verdict.py,
summary.py): intervals against hand-computed examples, the best row, the export choice."""

import numpy as np
import pytest

from sjft_tf.evaluation import metrics
from sjft_tf.experiments import policy, summary, verdict


def test_schedule_follows_the_target_size():
  # The from-scratch preset: 94 passes over Flowers' 1,020 images, 32 a batch, 6 epochs
  # of logging: 2,996.25 batches rounded up to 6 x 500.
  assert policy.schedule(1020, 32, 94, 6) == (3000, 500)
  # The pretrained preset: 7.5 passes, 10 epochs of logging: 239.06 -> 10 x 24.
  assert policy.schedule(1020, 32, 7.5, 10) == (240, 24)
  # Ten times the images, ten times the batches; a tiny target still gets an epoch each.
  assert policy.schedule(10200, 32, 94, 6) == (29964, 4994)
  assert policy.schedule(18, 32, 2, 2) == (2, 1)
  # Exact: 4 epochs of 64 images, 16 a batch, 2 logged epochs -> 16 batches, not 18.
  assert policy.schedule(64, 16, 4, 2) == (16, 8)
  assert policy.warmup_steps(1020, 32, 7.5) == 240 and policy.warmup_steps(1020, 32, 0) == 0
  with pytest.raises(ValueError, match="target_epochs"):
    policy.schedule(1020, 32, 0, 6)
  with pytest.raises(ValueError, match="training images"):
    policy.schedule(0, 32, 1, 6)


def test_budget_is_a_share_of_the_source():
  assert policy.budget_images(90000, 0.075) == 6750
  assert policy.budget_images(30000, 0.1) == 3000
  assert policy.budget_images(7, 0.01) == 1 and policy.budget_images(7, 1.0) == 7
  with pytest.raises(ValueError, match="budget_fraction 1.5"):
    policy.budget_images(100, 1.5)


def test_paired_interval_against_a_hand_computed_example():
  a = np.array([[1, 1, 0, 1], [1, 1, 1, 1]], bool)
  b = np.array([[0, 1, 0, 1], [1, 0, 0, 1]], bool)
  # Per seed: 0.25, 0.5 (mean 0.375, seed variance of the mean 0.03125 / 2); per image
  # 0.5, 0.5, 0.5, 0 (variance 0.0625, of the mean 0.0625 / 4); sum 0.03125; Welch-
  # Satterthwaite df = 0.03125^2 / (0.015625^2 / 3 + 0.015625^2 / 1) = 3; t(0.975, 3) =
  # 3.182446; half width 3.182446 * sqrt(0.03125) = 0.562587.
  result = verdict.difference(a, b)
  assert result["mean"] == pytest.approx(0.375)
  assert result["df"] == pytest.approx(3.0)
  assert result["low"] == pytest.approx(0.375 - 0.562587, abs=1e-5)
  assert result["high"] == pytest.approx(0.375 + 0.562587, abs=1e-5)
  assert result["reading"] == verdict.NO_EVIDENCE and result["paired"]
  # One seed: the image term alone, df = images - 1.
  one = verdict.difference(a[:1], b[:1])
  assert one["df"] == pytest.approx(3.0) and one["se_seeds"] == 0.0
  assert verdict.reading(0.01, 0.2) == verdict.HELPS
  assert verdict.reading(-0.2, -0.01) == verdict.HURTS


def test_unpaired_interval_and_a_clear_gain():
  # 1,000 images, accuracies 0.50 and 0.40 over 3 seeds: the split term is
  # (0.25 + 0.24) / 1000, the seed term var(0.1, 0.12, 0.08) / 3 = 0.0004 / 3.
  result = verdict.difference_unpaired([0.50, 0.52, 0.48], [0.40, 0.40, 0.40], 1000)
  total = 0.49 / 1000 + 0.0004 / 3
  df = total ** 2 / ((0.49 / 1000) ** 2 / 999 + (0.0004 / 3) ** 2 / 2)
  from scipy import stats  # pylint: disable=g-import-not-at-top
  half = stats.t.ppf(0.975, df) * np.sqrt(total)
  assert result["low"] == pytest.approx(0.1 - half) and result["high"] == pytest.approx(0.1 + half)
  assert result["reading"] == verdict.HELPS and not result["paired"]
  # The same accuracies paired on identical images: no split error, narrower.
  assert verdict.difference(np.eye(4, dtype=bool), np.eye(4, dtype=bool))["high"] == 0.0


def test_packed_per_image_record_round_trips():
  correct = np.array([1, 0, 1, 1, 0, 0, 0, 1, 1, 1, 0], bool)
  text = metrics.pack_correct(correct)
  np.testing.assert_array_equal(metrics.unpack_correct(text, 11), correct)
  with pytest.raises(ValueError, match="does not hold 20 images"):
    metrics.unpack_correct(text, 20)


def _study(test: bool = True) -> dict:
  """A results.json of three rows, two seeds, 8 images per split."""
  rng = np.random.default_rng(0)
  rows = {}
  for name, p in (("target_only", 0.3), ("joint_random", 0.4), ("selective_classes", 0.9)):
    runs = []
    for seed in (0, 1):
      run = {"seed": seed, "run_dir": f"runs/s/runs/{name}/seed{seed}", "correct": {}}
      for split in ("val", "test") if test else ("val",):
        correct = rng.random(8) < p
        run[f"{split}/centre/top1"] = float(correct.mean())
        run["correct"][f"{split}/centre"] = metrics.pack_correct(correct)
      runs.append(run)
    rows[name] = {"runs": runs, **{
        key: {"mean": float(np.mean([r[key] for r in runs]))}
        for key in runs[0] if key.endswith("top1")}}
  return {"rows": rows, "split_images": {"val": 8, "test": 8},
          "config": {"output_dir": "runs/s", "eval_splits": ["val", "test"] if test else ["val"],
                     "views": ["centre"], "train": {"validation_split": "val"}}}


def test_study_verdicts_best_row_and_export_choice():
  results = _study()
  assert summary.comparisons(results) == [
      ("joint_random", "target_only"), ("selective_classes", "target_only"),
      ("selective_classes", "joint_random")]
  found = summary.verdicts(results)
  assert len(found) == 6 and all(v["paired"] and v["seeds"] == 2 for v in found)
  first = found[0]  # joint_random - target_only on val, from the packed records
  rows = results["rows"]
  expected = np.mean([rows["joint_random"]["runs"][s]["val/centre/top1"]
                      - rows["target_only"]["runs"][s]["val/centre/top1"] for s in (0, 1)])
  assert first["mean"] == pytest.approx(expected)
  best = summary.best_row(results)
  assert best["row"] == "selective_classes"
  text = summary.markdown(results)
  assert "Best row on val: **selective_classes**" in text and "| selective_classes | 1 |" in text
  choice = summary.chosen_run(results, "elsewhere/s")
  assert choice["row"] == "selective_classes"
  assert choice["run_dir"] == f"elsewhere/s/runs/selective_classes/seed{choice['seed']}"
  named = summary.chosen_run(results, "s", row="target_only", seed=1)
  assert named["seed"] == 1 and named["why"] == "row target_only and seed 1 as named"
  with pytest.raises(ValueError, match="row 'l2sp' is not trained"):
    summary.chosen_run(results, "s", row="l2sp")
  with pytest.raises(ValueError, match="no trained seed 5"):
    summary.chosen_run(results, "s", row="target_only", seed=5)
  with pytest.raises(ValueError, match="s/results.json: the test split is not read yet"):
    summary.chosen_run(_study(test=False), "s")
  # Without per-image records (a study of an earlier version): unpaired, still an interval.
  for row in results["rows"].values():
    for run in row["runs"]:
      del run["correct"]
  assert not any(v["paired"] for v in summary.verdicts(results))
  del results["split_images"]
  assert summary.verdicts(results) == []
