"""The training levers of the lever study: a learning-rate multiplier for the heads and
L2-SP, checked against their definitions on a real model."""

import keras
import numpy as np
import pytest

from sjft_tf.training import losses, optimization, regularization
from sjft_tf.training import model as model_lib
import training_fixtures as fx


def _batch(seed=0, size=8):
  rng = np.random.default_rng(seed)
  images = rng.uniform(0, 255, (size, fx.IMAGE_SIZE, fx.IMAGE_SIZE, 3)).astype(np.float32)
  return images, {"target": rng.integers(0, 3, size), "source": rng.integers(0, 4, size)}


def _two_identical_models(seed=0):
  keras.utils.set_random_seed(seed)
  a = model_lib.build_joint_model(fx.TINY_MODEL, 3, 4)
  b = model_lib.build_joint_model(fx.TINY_MODEL, 3, 4)
  b.set_weights(a.get_weights())
  return a, b


def test_head_multiplier_is_a_larger_learning_rate_for_the_heads_only():
  images, labels = _batch()
  plain, scaled = _two_identical_models(1)
  start = {v.path: np.array(v) for v in plain.trainable_variables}
  lr, k = 0.01, 10.0
  losses.compile_joint(plain, keras.optimizers.SGD(lr))
  optimizer = optimization.make_optimizer(optimization.OptimizerConfig(
      learning_rate=lr, momentum=0.0, weight_decay=0.0, schedule="step",
      decay_every_steps=100, head_learning_rate_multiplier=k), 10)
  assert optimizer.multiplier == k
  losses.compile_joint(scaled, optimizer)
  plain.train_on_batch(images, labels)
  scaled.train_on_batch(images, labels)
  for p, s in zip(plain.trainable_variables, scaled.trainable_variables):
    factor = k if p.path.startswith(("target/", "source/")) else 1.0
    np.testing.assert_allclose(np.array(s) - start[s.path],
                               factor * (np.array(p) - start[p.path]), rtol=1e-4, atol=1e-8)


def test_multiplier_sgd_round_trips_through_its_config():
  optimizer = optimization.MultiplierSGD(10.0, learning_rate=0.02, momentum=0.9)
  again = optimization.MultiplierSGD.from_config(optimizer.get_config())
  assert (again.multiplier, again.pattern) == (10.0, optimization.HEAD_VARIABLES)


def test_l2sp_penalty_is_its_formula_and_zero_at_the_start():
  keras.utils.set_random_seed(2)
  model = model_lib.build_joint_model(fx.TINY_MODEL, 3, 4)
  config = regularization.L2SPConfig(alpha=0.1, beta=0.01)
  anchored = regularization.apply_l2sp(model, config)
  heads = [v for v in model.trainable_variables if v.path.startswith(("target/", "source/"))]
  assert anchored == len(model.trainable_variables) - len(heads)
  head_part = sum(0.5 * 0.01 * float((np.array(v) ** 2).sum()) for v in heads)
  assert float(sum(model.losses)) == pytest.approx(head_part, rel=1e-5)

  moved = {}
  rng = np.random.default_rng(0)
  for v in model.trainable_variables:
    if not v.path.startswith(("target/", "source/")):
      moved[v.path] = rng.normal(0, 0.01, v.shape).astype(np.float32)
      v.assign(np.array(v) + moved[v.path])
  base_part = sum(0.5 * 0.1 * float((d.astype(np.float64) ** 2).sum()) for d in moved.values())
  assert float(sum(model.losses)) == pytest.approx(head_part + base_part, rel=1e-4)


def test_l2sp_enters_the_training_loss_and_off_means_nothing_attached():
  images, labels = _batch(3)
  keras.utils.set_random_seed(3)
  model = model_lib.build_joint_model(fx.TINY_MODEL, 3, 4)
  assert regularization.apply_l2sp(model, regularization.L2SPConfig(alpha=0.0)) == 0
  assert not model.losses
  regularization.apply_l2sp(model, regularization.L2SPConfig(alpha=0.1, beta=1.0))
  losses.compile_joint(model, keras.optimizers.SGD(0.0))
  out = model(images, training=False)
  penalty = float(sum(model.losses))
  assert penalty > 0
  without = 0.5 * float(keras.losses.SparseCategoricalCrossentropy(from_logits=True)(
      labels["target"], out["target"])) + 0.5 * float(
      keras.losses.SparseCategoricalCrossentropy(from_logits=True)(labels["source"],
                                                                   out["source"]))
  assert float(model.compute_loss(images, labels, out)) == pytest.approx(without + penalty,
                                                                         rel=1e-4)


def test_a_saved_model_loads_after_import_sjft_tf_alone(tmp_path):
  import subprocess, sys  # noqa: E401
  keras.utils.set_random_seed(4)
  model = model_lib.build_joint_model(fx.TINY_MODEL, 3, 4)
  losses.compile_joint(model, optimization.MultiplierSGD(10.0, learning_rate=0.01))
  model.save(tmp_path / "model.keras")
  code = ("import sys, keras, sjft_tf\n"
          "m = keras.saving.load_model(sys.argv[1])\n"
          "print(type(m.optimizer).__name__, m.optimizer.multiplier)")
  done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "model.keras")],
                        capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-2000:]
  assert done.stdout.strip().splitlines()[-1] == "MultiplierSGD 10.0"


def test_target_batch_norm_uses_the_splits_statistics_and_restores_the_model(tmp_path):
  from sjft_tf.data import pipeline
  from sjft_tf.training import predict
  problem = fx.make_problem(str(tmp_path))
  from sjft_tf.selection import manifest
  spec_dir = manifest.load(problem).provenance.target.spec_dir
  keras.utils.set_random_seed(5)
  model = model_lib.build_joint_model(fx.TINY_MODEL, 3, 4)  # from scratch: unsettled
  layers = predict._batch_norm_layers(model)
  before = [np.array(v) for v in model.weights]
  reader = pipeline.ReaderConfig(batch_size=64, resize_size=fx.IMAGE_SIZE,
                                 crop_size=fx.IMAGE_SIZE)
  images = np.concatenate([b["image"].numpy() for b in pipeline.make_dataset(
      spec_dir, "train", reader, training=False)])
  with predict.target_batch_norm(model, spec_dir, "train", reader):
    # One batch holds the split: the first layer's moving mean is its batch mean.
    first = layers[0]
    assert not np.allclose(np.array(first.moving_mean), 0.0)
    inside = predict.target_probabilities(model, spec_dir, "train", reader)[2]
    np.testing.assert_allclose(inside, keras.ops.convert_to_numpy(keras.ops.softmax(
        model(images, training=True)["target"])), rtol=1e-4, atol=1e-5)
  for v, w in zip(model.weights, before):
    np.testing.assert_array_equal(np.array(v), w)
  assert all(layer.momentum == 0.99 for layer in layers)
