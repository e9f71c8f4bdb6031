"""The ablation's rows: their selections and their training runs."""

import dataclasses
import os

import numpy as np
import pytest

from sjft_tf import files
from sjft_tf.experiments import ablation
from sjft_tf.selection import manifest
from sjft_tf.training import train as train_lib
import training_fixtures as fx


@pytest.fixture(scope="module")
def first_round(tmp_path_factory):
  return fx.make_problem(str(tmp_path_factory.mktemp("ablation")))


def test_uniform_rounds_pool_every_given_source_for_every_target(first_round, tmp_path):
  base = manifest.load(first_round)
  rows = np.arange(0, len(base.source_ids), 3)
  folder = manifest.uniform_round(first_round, rows, str(tmp_path / "random"), "random")
  uniform = manifest.load(folder)
  kept = rows[np.isin(base.source_labels[rows], [
      base.source_class_names.index(c) for c in uniform.retained_classes])]
  assert all(set(pool.tolist()) == set(kept.tolist()) for pool in uniform.pools())
  assert sorted(uniform.selected.tolist()) == sorted(kept.tolist())
  np.testing.assert_array_equal(uniform.target_ids, base.target_ids)
  # Reused, not rewritten, when called again with the same rows (other rows remake it:
  # test_semantic).
  written = os.path.getmtime(os.path.join(folder, manifest.ARRAYS_FILENAME))
  assert manifest.uniform_round(first_round, rows, str(tmp_path / "random"),
                                "random") == folder
  assert os.path.getmtime(os.path.join(folder, manifest.ARRAYS_FILENAME)) == written


def test_every_row_gets_the_same_budget_and_its_own_selection_and_seed(first_round):
  template = train_lib.TrainConfig(output_dir="", target_spec_dir="data/target",
                                   model=fx.TINY_MODEL, pairs=fx.PAIRS, total_steps=120,
                                   steps_per_epoch=10)
  config = ablation.AblationConfig(output_dir="out", learned_descriptors="l",
                                   gabor_descriptors="g", train=template, rounds=3)
  runs = {row: ablation.run_configs(config, row, 7, None if row == "target_only" else
                                    first_round, f"out/{row}")[-1]
          for row in ablation.PAPER_ROWS}
  assert all((r.total_steps, r.steps_per_epoch, r.pairs.batch_size, r.optimizer, r.model)
             == (120, 10, fx.PAIRS.batch_size, template.optimizer, template.model)
             for name, r in runs.items() if name != "target_only")
  # The pre-training rows split the same batches between their two stages.
  for row in ("pretrain_classes", "pretrain_all"):
    chain = ablation.run_configs(config, row, 7, first_round, f"out/{row}")
    assert sum(r.total_steps for r in chain) == 120
    assert {r.pairs.batch_size for r in chain} == {fx.PAIRS.batch_size}
  # Equal target images a batch (the default): target-only takes the joint rows' half.
  assert runs["target_only"].pairs.batch_size == fx.PAIRS.batch_size // 2
  assert all(r.pairs.seed == 7 for r in runs.values())
  assert runs["target_only"].first_round == "" and runs["target_only"].target_spec_dir
  assert runs["selective_learned"].first_round == first_round
  assert runs["selective_learned"].target_spec_dir == ""
  assert runs["selective_learned_iterative"].epochs_per_round == 4  # 12 epochs, 3 rounds
  assert all(r.epochs_per_round == 0 for name, r in runs.items()
             if name != "selective_learned_iterative")
  with pytest.raises(ValueError, match="do not split into 5 rounds"):
    ablation.run_configs(ablation.AblationConfig(
        output_dir="o", learned_descriptors="l", gabor_descriptors="g", train=template,
        rounds=5), "selective_learned_iterative", 0, first_round, "x")


def test_summaries_are_mean_and_sample_std():
  summary = ablation.summarise([0.5, 0.6, 0.7])
  assert summary["mean"] == pytest.approx(0.6)
  assert summary["std"] == pytest.approx(0.1)
  assert ablation.summarise([0.4])["std"] == 0.0


def test_the_lever_table_picks_each_rows_best_setting_on_validation():
  from tools import lever_table

  def result(val, test):
    return {"rows": {"target_only": {
        "pool/centre/top1": ablation.summarise(val), "test/centre/top1": ablation.summarise(test),
        "selected_images": 0}}}

  settings = {"base": result([0.30, 0.32], [0.5, 0.5]), "l2sp": result([0.33, 0.35], [0.4, 0.4])}
  table, best = lever_table.lever_table(settings, "pool/centre/top1")
  assert best == {"target_only": "l2sp"}
  assert "| base | 31.0 ± 1.4 (n=2) |" in table and "| l2sp | 34.0 ± 1.4 (n=2) |" in table
  final = lever_table.final_table(settings, best, ["pool/centre/top1", "test/centre/top1"])
  # The test number is the chosen setting's, not the best test number.
  assert "| fine-tune, no source | l2sp | 34.0 ± 1.4 | 40.0 ± 0.0 | 2 | 0 |" in final


def test_a_run_of_an_earlier_version_matches_when_new_settings_are_at_their_defaults():
  defaults = {"a": 1, "new": False, "nested": {"x": 1, "added": 0.0}}
  saved = {"a": 1, "nested": {"x": 1}}
  current = {"a": 1, "new": False, "nested": {"x": 1, "added": 0.0}}
  assert files.matches(saved, current, defaults)
  assert not files.matches(saved, {**current, "new": True}, defaults)
  assert not files.matches(saved, {**current, "a": 2}, defaults)
  assert not files.matches({**saved, "gone": 1}, current, defaults)
  assert files.matches({**saved, "nested": {"x": 1, "gone": 1}}, current, defaults,
                       retired={"gone"})
  # An output of an earlier version recorded no input fingerprint: it is trusted; one
  # that did must have the current one.
  assert files.matches(saved, {**current, files.INPUTS_KEY: "f1"}, defaults)
  assert files.matches({**saved, files.INPUTS_KEY: "f1"}, {**current, files.INPUTS_KEY: "f1"},
                       defaults)
  assert not files.matches({**saved, files.INPUTS_KEY: "f0"},
                           {**current, files.INPUTS_KEY: "f1"}, defaults)


def test_a_saved_configuration_of_an_earlier_version_matches_the_current_one():
  """Files written before paths were stored relative to the run folder hold them as
  given (here relative to the working directory), and a retired setting
  (pairs.max_level, now the selection's)."""
  run_dir = "runs/r/runs/joint_random/seed0"
  config = train_lib.TrainConfig(output_dir=run_dir, first_round="runs/r/selections/round_000",
                                 verbose=0)
  current = train_lib._portable(dataclasses.asdict(config), run_dir)
  assert current["output_dir"] == "." and current["first_round"] == (
      "../../../selections/round_000")
  older = {**dataclasses.asdict(config), "pairs": {**dataclasses.asdict(config.pairs),
                                                  "max_level": 10}}
  defaults = dataclasses.asdict(train_lib.TrainConfig(run_dir))
  assert files.matches(train_lib._portable(older, run_dir, from_file=True),
                       current, defaults, train_lib._RETIRED_SETTINGS)
  # A file of this version (paths relative to the run folder) matches too.
  assert files.matches(train_lib._portable(current, run_dir, from_file=True),
                       current, defaults)
  moved = {**older, "first_round": "runs/r/selections/other/round_000"}
  assert not files.matches(train_lib._portable(moved, run_dir, from_file=True),
                           current, defaults, train_lib._RETIRED_SETTINGS)


def test_the_budget_line_counts_images_by_the_batch_mix(first_round):
  """32 target + 96 source images a batch: the line says so (not half and half)."""
  from sjft_tf.experiments import reproduce  # pylint: disable=g-import-not-at-top
  target = manifest.load(first_round).provenance.target
  template = train_lib.TrainConfig(
      output_dir="", target_spec_dir=target.spec_dir, model=fx.TINY_MODEL,
      pairs=dataclasses.replace(fx.PAIRS, batch_size=128, sources_per_target=3),
      total_steps=3000, steps_per_epoch=500)
  config = ablation.AblationConfig(output_dir="", learned_descriptors="",
                                   gabor_descriptors="", train=template)
  rows = {"joint_all": {"selected_images": 90_000}}
  line = reproduce.budget_line(config, rows)
  assert "sees 96,000 target images" in line and "288,000 source images" in line
  assert "3.2-3.2 passes over their 90,000-90,000 selected images" in line
  # An iterative row's selection grows over its rounds: the range counts its last too.
  rows["selective_learned_iterative"] = {"selected_images": 6_972,
                                         "final_selected_images": 14_136}
  assert "3.2-41.3 passes over their 6,972-90,000" in reproduce.budget_line(config, rows)
  rows = {"selective_learned_iterative": rows["selective_learned_iterative"]}
  assert "20.4-41.3 passes over their 6,972-14,136" in reproduce.budget_line(config, rows)
