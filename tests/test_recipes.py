"""The fine-tuning recipes beyond the paper's: frozen batch norm, starting from another
run (linear probe then fine-tune, warmed-up heads), several source images a target,
scale augmentation, learning curves on a validation split, and the ablation rows that
use them."""

import dataclasses
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from sjft_tf import files, outputs
from sjft_tf.data import pipeline
from sjft_tf.experiments import ablation
from sjft_tf.selection import manifest
from sjft_tf.training import losses, model as model_lib, optimization, predict
from sjft_tf.training import sampler as sampler_lib
from sjft_tf.training import train as train_lib
import training_fixtures as fx


@pytest.fixture(scope="module")
def problem(tmp_path_factory):
  return fx.make_problem(str(tmp_path_factory.mktemp("recipes")))


def _target_dir(problem):
  return manifest.load(problem).provenance.target.spec_dir


def test_groups_of_several_sources_per_target(problem):
  selection = manifest.load(problem)
  config = dataclasses.replace(fx.PAIRS, batch_size=8, sources_per_target=3)
  pairs = sampler_lib.PairSampler(problem, config)
  targets, sources = pairs.pair_ids(0, 2000)
  assert sources.shape == (2000, 3)
  pools = {t: set(selection.source_ids[p].tolist())
           for t, p in zip(selection.target_ids.tolist(), selection.pools())}
  assert all(s in pools[t] for t, row in zip(targets.tolist(), sources.tolist()) for s in row)
  # The k draws of a group are independent and uniform over the pool of n: all three
  # differ with probability n (n - 1) (n - 2) / n^3.
  size = {t: len(p) for t, p in zip(selection.target_ids.tolist(), selection.pools())}
  expected = np.mean([size[t] * (size[t] - 1) * (size[t] - 2) / size[t] ** 3
                      for t in targets.tolist()])
  assert expected > 0.05
  assert np.mean([len(set(row)) == 3 for row in sources.tolist()]) == pytest.approx(
      expected, abs=0.03)
  # A batch of 8 holds 2 groups: target, source, source, source, target, ...
  images, labels = next(iter(pairs.dataset()))
  assert images.shape == (8, fx.IMAGE_SIZE, fx.IMAGE_SIZE, 3)
  np.testing.assert_array_equal(labels["target"].numpy() >= 0, [1, 0, 0, 0] * 2)
  np.testing.assert_array_equal(labels["source"].numpy() >= 0, [0, 1, 1, 1] * 2)
  assert config.target_images_per_batch() == 2
  with pytest.raises(ValueError, match="multiple of 4"):
    sampler_lib.PairSampler(problem, dataclasses.replace(config, batch_size=6))


def test_one_source_per_target_draws_what_earlier_versions_drew(problem):
  """k = 1 keeps the stream of pairs (a run of an earlier version resumes the same)."""
  selection = manifest.load(problem)
  pairs = sampler_lib.PairSampler(problem, fx.PAIRS)
  targets, sources = pairs.pair_ids(0, 50)
  cdf = np.cumsum(selection.levels) / selection.levels.sum()
  pools = selection.pools()
  for index in range(50):  # the former _draw: 4 seeds, u, offset, 2 image seeds
    seeds = tf.random.experimental.stateless_split(
        tf.constant([fx.PAIRS.seed, index], tf.int64), 4)
    u = float(tf.random.stateless_uniform([], seeds[0], dtype=tf.float64))
    target = min(int(np.searchsorted(cdf, u, side="right")), len(cdf) - 1)
    pool = pools[target]
    offset = min(int(float(tf.random.stateless_uniform([], seeds[1], dtype=tf.float64))
                     * len(pool)), len(pool) - 1)
    assert targets[index] == selection.target_ids[target]
    assert sources[index] == selection.source_ids[pool[offset]]


def test_scale_augmentation_crops_a_random_share_and_repeats_by_seed():
  ramp = tf.cast(tf.tile(tf.range(64)[None, :, None], [64, 1, 3]), tf.float32)
  seed = tf.constant([3, 7], tf.int64)
  fixed = pipeline.random_crop_and_flip(ramp, 32, seed)
  np.testing.assert_array_equal(fixed, pipeline.random_crop_and_flip(ramp, 32, seed, 0.0))
  widths = []
  for index in range(40):
    seed = tf.constant([3, index], tf.int64)
    crop = pipeline.random_crop_and_flip(ramp, 32, seed, 0.25)
    assert crop.shape == (32, 32, 3)
    np.testing.assert_array_equal(crop, pipeline.random_crop_and_flip(ramp, 32, seed, 0.25))
    row = crop.numpy()[0, :, 0]
    widths.append(abs(row[-1] - row[0]) * 32 / 31)  # the window's width in pixels
  # Windows of a quarter (32 x 32 at aspect 1) to all of the 64 x 64 image.
  assert min(widths) >= 24 and max(widths) > 48 and np.std(widths) > 5


def test_frozen_batch_norm_keeps_its_statistics_while_the_rest_learns():
  model = model_lib.build_joint_model(dataclasses.replace(
      fx.TINY_MODEL, freeze_batch_norm=True), 3)
  losses.compile_joint(model, optimization.make_optimizer(
      optimization.OptimizerConfig(learning_rate=0.1), 10))
  base = model.get_layer("mobilenet_0.25_32")
  norms = [layer for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization)]
  before = [np.array(w) for layer in norms for w in layer.weights]
  kernel = np.array(base.get_layer("conv1").kernel)
  rng = np.random.default_rng(0)
  images = rng.uniform(0, 255, (8, fx.IMAGE_SIZE, fx.IMAGE_SIZE, 3)).astype(np.float32)
  model.train_on_batch(images, {"target": rng.integers(0, 3, 8)})
  after = [np.array(w) for layer in norms for w in layer.weights]
  assert all(np.array_equal(a, b) for a, b in zip(before, after))  # moving stats, gamma, beta
  assert not np.array_equal(kernel, np.array(base.get_layer("conv1").kernel))


def test_copy_weights_takes_the_base_and_matching_heads():
  keras.utils.set_random_seed(1)
  source = model_lib.build_joint_model(fx.TINY_MODEL, 3, 5)
  keras.utils.set_random_seed(2)
  fresh = model_lib.build_joint_model(fx.TINY_MODEL, 3, 4)  # another source head
  copied = model_lib.copy_weights(source, fresh)
  assert "target" in copied and "source" not in copied
  for a, b in zip(source.get_layer("mobilenet_0.25_32").get_weights(),
                  fresh.get_layer("mobilenet_0.25_32").get_weights()):
    np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(source.get_layer("target").get_weights()[0],
                                fresh.get_layer("target").get_weights()[0])
  other = model_lib.build_joint_model(dataclasses.replace(fx.TINY_MODEL, alpha=0.5), 3)
  with pytest.raises(ValueError, match="another base"):
    model_lib.copy_weights(source, other)


def _target_run(problem, output_dir, **changes):
  config = train_lib.TrainConfig(
      output_dir=str(output_dir), target_spec_dir=_target_dir(problem), model=fx.TINY_MODEL,
      pairs=dataclasses.replace(fx.PAIRS, batch_size=4), total_steps=4, steps_per_epoch=2,
      strategy="one_device", verbose=0)
  return dataclasses.replace(config, **changes)


def test_linear_probe_then_fine_tune_and_its_learning_curve(problem, tmp_path):
  probe = _target_run(problem, tmp_path / "probe",
                      model=dataclasses.replace(fx.TINY_MODEL, freeze="."),
                      validation_split="test", validation_images=4)
  train_lib.train(probe)
  keras.utils.set_random_seed(0)
  initial = model_lib.build_joint_model(fx.TINY_MODEL, 3)
  probed = keras.saving.load_model(tmp_path / "probe" / "model.keras")
  # The probe trained the head alone: the base is its seeded random start.
  for a, b in zip(initial.get_layer("mobilenet_0.25_32").get_weights(),
                  probed.get_layer("mobilenet_0.25_32").get_weights()):
    np.testing.assert_array_equal(a, b)
  assert not np.array_equal(initial.get_layer("target").get_weights()[0],
                            probed.get_layer("target").get_weights()[0])
  # Its learning curve: the validation split's top-1 each epoch; the last equals an
  # evaluation of the saved model on those images.
  history = (tmp_path / "probe" / "history.csv").read_text().splitlines()
  header = history[0].split(",")
  assert "target_validation_accuracy" in header and len(history) == 3
  curve = [float(line.split(",")[header.index("target_validation_accuracy")])
           for line in history[1:]]
  _, labels, probabilities = predict.target_probabilities(
      probed, _target_dir(problem), "test", pipeline.ReaderConfig(
          batch_size=4, resize_size=36, crop_size=fx.IMAGE_SIZE), max_images=4)
  assert len(labels) == 4
  assert curve[-1] == pytest.approx(np.mean(probabilities.argmax(1) == labels))

  # Fine-tuning from the probe starts at the probe's weights and records it as an input.
  finetune = _target_run(problem, tmp_path / "finetune",
                         initial_run=str(tmp_path / "probe"))
  train_lib.train(finetune)
  saved = (tmp_path / "finetune" / "train_config.json").read_text()
  assert '"initial_run": "../probe"' in saved
  # A starting model that is not the file its run wrote is refused by name, before
  # anything is written...
  probed.get_layer("target").kernel.assign(np.zeros((256, 3), np.float32))
  probed.save(tmp_path / "probe" / "model.keras")
  with pytest.raises(ValueError, match=r"initial_run: .*probe/model.keras is a Keras model "
                                       r"but not the one this run's report records"):
    train_lib.train(finetune)
  # ...and one its run made again (its report records it) is another input: the
  # finished fine-tuning is not reused for it.
  report_path = tmp_path / "probe" / "train_report.json"
  report = json.loads(report_path.read_text())
  report["model_fingerprint"] = files.fingerprint({}, str(tmp_path / "probe" / "model.keras"))
  report_path.write_text(json.dumps(report))
  with pytest.raises(ValueError, match="trained on other inputs"):
    train_lib.train(finetune)


def test_ablation_rows_chain_their_runs(problem):
  template = train_lib.TrainConfig(output_dir="", target_spec_dir="data/target",
                                   model=fx.TINY_MODEL, pairs=fx.PAIRS, total_steps=120,
                                   steps_per_epoch=10)
  config = ablation.AblationConfig(output_dir="out", learned_descriptors="l",
                                   gabor_descriptors="", train=template,
                                   head_warmup_steps=30, head_warmup_learning_rate=0.05)
  chains = {row: ablation.run_configs(config, row, 4, None if row in ablation.NO_SOURCE_ROWS
                                      else problem, f"out/runs/{row}/seed4")
            for row in ("target_only", "l2sp", "linear_probe", "lp_ft", "joint_random")}
  assert [len(c) for c in chains.values()] == [1, 1, 1, 2, 2]
  probe = chains["linear_probe"][0]
  assert probe.output_dir == "out/runs/linear_probe/seed4"
  assert (probe.model.freeze, probe.total_steps, probe.steps_per_epoch) == (".", 30, 10)
  assert probe.optimizer.learning_rate == 0.05 and probe.pairs.batch_size == 4
  assert chains["lp_ft"][0] == probe  # lp_ft's first stage is the linear_probe row's run
  assert chains["lp_ft"][1].initial_run == probe.output_dir
  assert chains["lp_ft"][1].model.freeze == "" and chains["lp_ft"][1].total_steps == 120
  warmup, joint = chains["joint_random"]
  assert warmup.output_dir == "out/runs/joint_random/seed4/warmup"
  assert warmup.first_round == joint.first_round == problem and warmup.model.freeze == "."
  assert joint.initial_run == warmup.output_dir and joint.optimizer == template.optimizer
  l2sp = chains["l2sp"][0]
  assert l2sp.l2sp.alpha == 0.1 and l2sp.optimizer.weight_decay == 0.0
  assert chains["target_only"][0].initial_run == ""
  # Several sources a target: the target-only rows see the joint rows' target images.
  grouped = dataclasses.replace(config, train=dataclasses.replace(
      template, pairs=dataclasses.replace(fx.PAIRS, sources_per_target=3)))
  assert ablation.run_configs(grouped, "target_only", 0, None, "x")[0].pairs.batch_size == 2
  with pytest.raises(ValueError, match="need a head warm-up"):
    ablation.AblationConfig(output_dir="o", learned_descriptors="l", gabor_descriptors="",
                            train=template, rows=("lp_ft",))


def test_pretraining_row_trains_the_source_alone_then_the_target_from_its_base(
    problem, tmp_path):
  """pretrain_classes / pretrain_all (rows.REGISTRY): the selection alone for
  pretrain_share of the epochs (one target image a batch, its loss weighing 0), then the
  target alone with a fresh target head from that base, in batches of the joint size."""
  template = train_lib.TrainConfig(output_dir="", target_spec_dir="", model=fx.TINY_MODEL,
                                   pairs=fx.PAIRS, total_steps=40, steps_per_epoch=10)
  config = ablation.AblationConfig(output_dir=str(tmp_path), learned_descriptors="l",
                                   gabor_descriptors="", train=template, pretrain_share=0.75)
  run_dir = str(tmp_path / "runs" / "pretrain_all" / "seed0")
  source, target = ablation.run_configs(config, "pretrain_all", 0, problem, run_dir)
  assert source.output_dir == os.path.join(run_dir, "pretrain") and source.first_round == problem
  assert (source.total_steps, source.target_loss_weight) == (30, 0.0)
  assert source.pairs.target_images_per_batch() == 1
  assert source.pairs.batch_size == target.pairs.batch_size == fx.PAIRS.batch_size
  assert (target.first_round, target.initial_run, target.total_steps) == ("", source.output_dir, 10)
  assert target.fresh_target_head and target.target_spec_dir
  with pytest.raises(ValueError, match="pretrain_share 1.0 of 4 epochs leaves 4"):
    ablation.run_configs(dataclasses.replace(config, pretrain_share=1.0), "pretrain_all", 0,
                         problem, run_dir)
  reports = [train_lib.train(stage) for stage in (source, target)]
  # The first stage's loss is the source head's alone (weighted 0.5).
  logs = reports[0]["final_epoch_logs"]
  assert logs["loss"] == pytest.approx(0.5 * logs["source_loss"], rel=1e-4)
  pretrained = outputs.TrainedRun.read(source.output_dir).load_model()
  finetuned = outputs.TrainedRun.read(run_dir)
  assert finetuned.first_round == "" and "source_loss" not in finetuned.report["final_epoch_logs"]
  saved = json.loads((tmp_path / "runs" / "pretrain_all" / "seed0" / "train_config.json").read_text())
  assert saved["initial_run"] == "pretrain" and saved["fresh_target_head"]
  # A fresh target head: copy_weights leaves a skipped head as initialised.
  fresh = model_lib.build_joint_model(fx.TINY_MODEL, pretrained.get_layer("target").units,
                                      pretrained.get_layer("source").units)
  before = fresh.get_layer("target").get_weights()
  copied = model_lib.copy_weights(pretrained, fresh, skip=("target",))
  assert "target" not in copied and "source" in copied
  for a, b in zip(before, fresh.get_layer("target").get_weights()):
    np.testing.assert_array_equal(a, b)
  base = next(l for l in fresh.layers if l.weights and l.name not in ("target", "source"))
  for a, b in zip(base.get_weights(), pretrained.get_layer(base.name).get_weights()):
    np.testing.assert_array_equal(a, b)
