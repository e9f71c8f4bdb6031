"""Mixed precision and compiled steps: what stays float32, how close a bfloat16 step and
a bfloat16 run come to float32's, the compiled step, the export, the GPU script."""

import dataclasses
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from sjft_tf import outputs, precision
from sjft_tf.descriptors import extract, histogram
from sjft_tf.evaluation import evaluate
from sjft_tf.export import serving
from sjft_tf.selection import manifest
from sjft_tf.training import losses, model as model_lib, optimization
from sjft_tf.training import train as train_lib
import training_fixtures as fx

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def problem(tmp_path_factory):
  return fx.make_problem(str(tmp_path_factory.mktemp("precision")))


def _step_logs(policy: str, jit_compile: bool = False, steps: int = 2
               ) -> tuple[list, keras.Model]:
  """The logs of `steps` training steps of the tiny joint model from one seeded start."""
  keras.utils.set_random_seed(0)
  model = model_lib.build_joint_model(dataclasses.replace(fx.TINY_MODEL, dtype_policy=policy),
                                      3, 4)
  losses.compile_joint(model, optimization.make_optimizer(
      optimization.OptimizerConfig(learning_rate=0.01), 10), jit_compile=jit_compile)
  rng = np.random.default_rng(0)
  images = rng.uniform(0, 255, (8, fx.IMAGE_SIZE, fx.IMAGE_SIZE, 3)).astype(np.float32)
  rows = np.arange(8)
  labels = {"target": np.where(rows % 2 == 0, rng.integers(0, 3, 8), -1),
            "source": np.where(rows % 2 == 1, rng.integers(0, 4, 8), -1)}
  logs = [model.train_on_batch(images, labels, return_dict=True) for _ in range(steps)]
  return logs, model


def test_a_bfloat16_step_keeps_float32_heads_and_losses_close_to_float32():
  reference, float_model = _step_logs("float32")
  mixed, model = _step_logs("mixed_bfloat16")
  base = model.get_layer("mobilenet_0.25_32")
  assert base.get_layer("conv1").compute_dtype == "bfloat16"
  assert base.get_layer("conv1").kernel.dtype == "float32"  # variables stay float32
  for head in ("target", "source"):
    assert model.get_layer(head).compute_dtype == "float32"
  outputs_ = model(np.zeros((2, fx.IMAGE_SIZE, fx.IMAGE_SIZE, 3), np.float32))
  assert all(v.dtype == "float32" for v in outputs_.values())
  # bfloat16 keeps 8 bits of mantissa: the first step's losses (same weights) agree
  # within 5% (measured: 1-3% through 28 layers and batch norm on 8 images), the
  # second's (after a bfloat16 update) within 10%.
  for step, tolerance in enumerate((0.05, 0.10)):
    for key in ("loss", "target_loss", "source_loss"):
      assert float(mixed[step][key]) == pytest.approx(float(reference[step][key]),
                                                      rel=tolerance), (step, key)
  # Under float16 Keras wraps the optimizer in its loss scaling.
  _, half = _step_logs("mixed_float16")
  assert isinstance(half.optimizer, keras.optimizers.LossScaleOptimizer)
  assert not isinstance(float_model.optimizer, keras.optimizers.LossScaleOptimizer)
  assert keras.config.dtype_policy().name == "float32"  # the global policy is restored
  with pytest.raises(ValueError, match="unknown dtype policy"):
    precision.check("bfloat16")


def test_a_compiled_step_equals_the_uncompiled_one():
  plain, plain_model = _step_logs("float32", jit_compile=False)
  compiled, compiled_model = _step_logs("float32", jit_compile=True)
  # XLA fuses and reorders float32 sums: equal to about 1e-4 (measured 4e-4 at most).
  for a, b in zip(plain, compiled):
    for key in ("loss", "target_loss", "source_loss"):
      assert float(b[key]) == pytest.approx(float(a[key]), rel=2e-3), key
  # The two steps' change of the weights agrees to 2% of its size (batch norm on 8
  # images amplifies the reordered sums in the first layers' gradients).
  keras.utils.set_random_seed(0)
  start = model_lib.build_joint_model(fx.TINY_MODEL, 3, 4).get_weights()
  changes = [np.concatenate([(w - w0).ravel() for w, w0 in zip(m.get_weights(), start)])
             for m in (plain_model, compiled_model)]
  assert np.linalg.norm(changes[1] - changes[0]) < 0.02 * np.linalg.norm(changes[0])


def test_a_mixed_bank_counts_in_float32_and_matches_float32_histograms():
  config = extract.BankConfig(kind="gabor")
  rng = np.random.default_rng(1)
  images = rng.uniform(0, 255, (4, 48, 48, 3)).astype(np.float32)
  maps = [np.asarray(m) for m in extract.make_bank(config)(images)]
  lower, upper = (np.asarray(v) for v in histogram.batch_ranges(maps))
  floor = histogram.zero_floors(lower, upper)
  edges = histogram.equal_mass_edges(np.asarray(histogram.batch_fine_counts(
      maps, lower, upper, zero_floor=floor)), lower, upper, 16)
  results = {}
  for policy in ("float32", "mixed_bfloat16"):
    bank = extract.make_bank(config, policy)
    layer = histogram.HistogramLayer(edges, floor, dtype="float32")
    results[policy] = np.asarray(layer(bank(images)))
  assert results["mixed_bfloat16"].dtype == np.float32
  # Each channel's histogram still sums to 1; bfloat16 responses move few pixels across
  # bin edges (L1 distance per channel histogram well below its maximum of 2).
  per_channel = results["mixed_bfloat16"].reshape(4, -1, 16)
  np.testing.assert_allclose(per_channel.sum(-1), 1.0, atol=1e-5)
  moved = np.abs(results["mixed_bfloat16"] - results["float32"]).reshape(4, -1, 16).sum(-1)
  assert moved.mean() < 0.3


def test_a_mixed_run_trains_evaluates_and_serves_float32_probabilities(problem, tmp_path):
  """The small joint problem trained in float32 and in mixed_bfloat16: accuracy within
  a few points; the export of the mixed model answers in float32 as the float one does."""
  target_dir = manifest.load(problem).provenance.target.spec_dir
  results = {}
  for policy in ("float32", "mixed_bfloat16"):
    run_dir = str(tmp_path / policy)
    train_lib.train(train_lib.TrainConfig(
        output_dir=run_dir, first_round=problem,
        model=dataclasses.replace(fx.TINY_MODEL, dtype_policy=policy), pairs=fx.PAIRS,
        total_steps=24, steps_per_epoch=12, strategy="one_device", verbose=0,
        optimizer=optimization.OptimizerConfig(learning_rate=0.05)))
    results[policy] = evaluate.evaluate(run_dir, target_dir, evaluate.EvalConfig(
        split="train", views=("centre",)))["views"]["centre"]["top1"]
    trained = outputs.TrainedRun.read(run_dir)
    export = serving.export(trained.load_model(), trained.target_class_names,
                            str(tmp_path / f"export_{policy}"), trained.resize_size,
                            trained.crop_size, top_k=2)
    served = tf.saved_model.load(export).signatures[serving.PIXELS_SIGNATURE]
    answer = served(images=tf.zeros([2, fx.IMAGE_SIZE, fx.IMAGE_SIZE, 3]))
    assert answer["probabilities"].dtype == tf.float32
    assert answer["top_k_probabilities"].dtype == tf.float32
    np.testing.assert_allclose(answer["probabilities"].numpy().sum(1), 1.0, atol=1e-5)
    assert sorted(served.structured_outputs) == [
        "probabilities", "top_k_classes", "top_k_indices", "top_k_probabilities"]
  assert abs(results["mixed_bfloat16"] - results["float32"]) <= 0.25, results


def _smoke(module: str, backend: str, output) -> dict:
  """Runs `python -m module --smoke --output=output` under a Keras backend; its JSON."""
  done = subprocess.run([sys.executable, "-m", module, "--smoke", f"--output={output}"],
                        cwd=REPO, env=dict(os.environ, KERAS_BACKEND=backend,
                                           TF_CPP_MIN_LOG_LEVEL="2"),
                        capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  import json  # pylint: disable=g-import-not-at-top
  with open(output) as f:
    return json.load(f)


def test_gpu_check_smoke_runs_on_this_machine(tmp_path):
  """tools/gpu_check.py --smoke: every section at tiny sizes (TensorFlow's backend here;
  on the GPU host it runs under JAX without TensorFlow)."""
  rows = _smoke("tools.gpu_check", "tensorflow", tmp_path / "g.json")["rows"]
  names = [r["name"] for r in rows]
  assert any(n.startswith("train joint") for n in names)
  assert any(n.startswith("descriptors") for n in names)
  divergence = [r for r in rows if r["name"].startswith("divergence")]
  assert len(divergence) == 3 and all(r["value"] > 0 for r in rows)
  # The products in 16 bits stay close to the float32 divergence.
  assert all(r["max_relative_error"] < 0.05 for r in divergence)


def test_gpu_study_smoke_trains_every_row_under_jax(tmp_path):
  """tools/gpu_study.py --smoke: the three rows trained a few batches from numpy arrays
  under Keras' JAX backend (as on the GPU host, no TensorFlow in the loop), with the
  augmentation's shapes and the joint batch's domain masks as the study uses them."""
  report = _smoke("tools.gpu_study", "jax", tmp_path / "s.json")
  assert report["device"] == "cpu"
  assert [r["row"] for r in report["runs"]] == ["target_only", "joint_random",
                                                  "selective_classes"]
  assert all(0 <= r["val_top1"] <= 1 and r["steps"] == 4 for r in report["runs"])
  assert "source_loss" in report["runs"][1]["final_logs"]
  assert "source_loss" not in report["runs"][0]["final_logs"]
  sys.path.insert(0, REPO)
  from tools import gpu_study  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
  crops = gpu_study.augment(images, rng)
  assert crops.shape == (5, 32, 32, 3) and crops.dtype == np.float32
  # Every crop is a window of the reflect-padded image, perhaps flipped.
  padded = np.pad(images[0], ((4, 4), (4, 4), (0, 0)), "reflect").astype(np.float32)
  windows = [padded[r:r + 32, c:c + 32] for r in range(9) for c in range(9)]
  assert any(np.array_equal(crops[0], w) or np.array_equal(crops[0], w[:, ::-1])
             for w in windows)
  arrays = gpu_study.smoke_arrays(rng)
  batch_images, labels = next(gpu_study.batches(arrays, "selective_classes", rng))
  assert batch_images.shape == (128, 32, 32, 3)
  assert (labels["target"][:32] >= 0).all() and (labels["target"][32:] == -1).all()
  assert (labels["source"][:32] == -1).all() and (labels["source"][32:] >= 0).all()
