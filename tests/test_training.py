"""Joint training: the loss, the paired input, the drivers, resume, rounds, the CLI."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from sjft_tf import integrity
from sjft_tf.selection import levels as levels_lib
from sjft_tf.selection import manifest
from sjft_tf.training import losses, model as model_lib, optimization, sampler as sampler_lib
from sjft_tf.training import train as train_lib
import training_fixtures as fx

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Scripts run in subprocesses import this module and its fixtures.
_SCRIPT_ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
                   PYTHONPATH=os.pathsep.join([os.path.join(REPO, "tests"),
                                               os.environ.get("PYTHONPATH", "")]))


def _run_python(code: str, *args, env=None, timeout=300):
  return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], cwd=REPO,
                        env=dict(_SCRIPT_ENV, **(env or {})),
                        capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def problem(tmp_path_factory):
  """round_000 of the small problem, targets at levels 1, 2, 3, 1, 2, 3, ..."""
  root = str(tmp_path_factory.mktemp("training"))
  return fx.make_problem(root, levels=np.arange(12) % 3 + 1)


def _cross_entropy(logits, labels):
  logits = np.asarray(logits, np.float64)
  log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  return -log_p[np.arange(len(labels)), labels]


def _mixed_batch(rng, size=8, target_classes=3, source_classes=4):
  images = rng.uniform(0, 255, (size, fx.IMAGE_SIZE, fx.IMAGE_SIZE, 3)).astype(np.float32)
  target = np.where(np.arange(size) % 2 == 0, rng.integers(0, target_classes, size), -1)
  source = np.where(np.arange(size) % 2 == 1, rng.integers(0, source_classes, size), -1)
  return images, {"target": target, "source": source}


def test_joint_loss_is_half_of_each_domains_mean_not_of_the_mixed_batch():
  keras.utils.set_random_seed(0)
  joint = model_lib.build_joint_model(fx.TINY_MODEL, 3, 4)
  losses.compile_joint(joint, keras.optimizers.SGD(0.0))
  images, labels = _mixed_batch(np.random.default_rng(0))
  out = joint(images, training=False)
  t, s = labels["target"] >= 0, labels["source"] >= 0
  expected = (0.5 * _cross_entropy(out["target"][t], labels["target"][t]).mean()
              + 0.5 * _cross_entropy(out["source"][s], labels["source"][s]).mean())
  assert float(joint.compute_loss(images, labels, out)) == pytest.approx(expected, rel=1e-5)

  # The target head's gradient is half that of plain fine-tuning on the target rows
  # (the paper's 0.5 weight), not a quarter (a mask averaged over the mixed batch).
  plain = model_lib.build_joint_model(fx.TINY_MODEL, 3)
  losses.compile_joint(plain, keras.optimizers.SGD(0.0))
  plain.set_weights([w for w, v in zip(joint.get_weights(), joint.weights)
                     if not v.path.startswith("source")])

  def head_gradient(model, x, y):
    with tf.GradientTape() as tape:
      loss = model.compute_loss(x, y, model(x, training=False))
    return tape.gradient(loss, model.get_layer("target").kernel).numpy()

  np.testing.assert_allclose(
      head_gradient(joint, images, labels),
      0.5 * head_gradient(plain, images[t], {"target": labels["target"][t]}),
      rtol=1e-4, atol=1e-7)


def test_a_source_only_batch_leaves_the_target_head_unchanged():
  keras.utils.set_random_seed(1)
  joint = model_lib.build_joint_model(fx.TINY_MODEL, 3, 4)
  # No weight decay: Keras' decoupled decay shrinks every weight, gradient or not.
  losses.compile_joint(joint, keras.optimizers.SGD(0.1, momentum=0.9))
  images, labels = _mixed_batch(np.random.default_rng(1))
  labels = {"target": np.full(8, -1), "source": np.arange(8) % 4}
  before = {layer: [w.copy() for w in joint.get_layer(layer).get_weights()]
            for layer in ("target", "source")}
  logs = joint.train_on_batch(images, labels, return_dict=True)
  assert logs["target_loss"] == 0.0 and logs["source_loss"] > 0.0
  for w, w0 in zip(joint.get_layer("target").get_weights(), before["target"]):
    np.testing.assert_array_equal(w, w0)
  assert not np.allclose(joint.get_layer("source").get_weights()[0], before["source"][0])


def test_pairs_follow_levels_and_pools_and_labels_match(problem):
  selection = manifest.load(problem)
  pairs = sampler_lib.PairSampler(problem, fx.PAIRS)
  # The head's classes are the selection's, decided once for the run.
  assert pairs.source_class_names == selection.head_classes == [
      n for n in selection.source_class_names
      if np.sum(selection.source_labels[np.unique(selection.neighbours[:, :30])]
                == selection.source_class_names.index(n)) >= 2]
  draws = 12000
  targets, sources = pairs.pair_ids(0, draws)
  pools = {t: set(selection.source_ids[p].tolist())
           for t, p in zip(selection.target_ids.tolist(), selection.pools())}
  assert all(s in pools[t] for t, s in zip(targets.tolist(), sources.tolist()))
  # Targets are drawn in proportion to their level (binomial s.e. < 0.004 here).
  counts = np.array([np.sum(targets == t) for t in selection.target_ids]) / draws
  np.testing.assert_allclose(counts, selection.levels / selection.levels.sum(), atol=0.015)
  # Sources uniformly within the pool: each of a level-3 target's 9 equally often.
  first = selection.target_ids[2]
  _, per_source = np.unique(sources[targets == first], return_counts=True)
  assert len(per_source) == 9 and per_source.min() > 0.6 * per_source.mean()

  # A batch holds those pairs, interleaved, with each head's labels on its rows only.
  pairs.start_at(100)
  images, labels = next(iter(pairs.dataset()))
  t_ids, s_ids = pairs.pair_ids(100, 4)
  label_of = dict(zip(selection.target_ids.tolist(), selection.target_labels.tolist()))
  source_class = dict(zip(selection.source_ids.tolist(), selection.source_labels.tolist()))
  np.testing.assert_array_equal(labels["target"][::2], [label_of[i] for i in t_ids])
  np.testing.assert_array_equal(labels["source"][1::2], [
      pairs.source_class_names.index(selection.source_class_names[source_class[i]])
      for i in s_ids])
  assert (labels["target"].numpy()[1::2] == -1).all()
  assert (labels["source"].numpy()[::2] == -1).all()
  assert images.shape == (8, fx.IMAGE_SIZE, fx.IMAGE_SIZE, 3)

  # A new round's pools take effect without a new dataset.
  selection = manifest.derive(dataclasses.replace(
      selection, levels=np.full(12, 10, np.int32), round_index=1))
  pairs.set_selection(selection)
  targets, sources = pairs.pair_ids(0, 3000)
  wide = {t: set(selection.source_ids[p].tolist())
          for t, p in zip(selection.target_ids.tolist(), selection.pools())}
  assert all(s in wide[t] for t, s in zip(targets.tolist(), sources.tolist()))
  assert sum(s not in pools[t] for t, s in zip(targets.tolist(), sources.tolist())) > 1000
  with pytest.raises(ValueError, match="reaches beyond"):
    pairs.set_selection(manifest.derive(dataclasses.replace(
        selection, levels=np.full(12, 11, np.int32))))
  # The memory cap stops the loading, not after it.
  with pytest.raises(ValueError, match="need more than max_encoded_gib=1e-05"):
    sampler_lib.PairSampler(problem, sampler_lib.PairConfig(
        batch_size=8, crop_size=fx.IMAGE_SIZE, max_encoded_gib=1e-5))


def test_schedules_and_gradient_accumulation():
  step = optimization.learning_rate_schedule(optimization.OptimizerConfig(
      learning_rate=0.01, schedule="step", decay_every_steps=30), 100)
  assert [round(float(step(i)), 8) for i in (0, 29, 30, 59, 60, 89, 90, 99)] == [
      0.01, 0.01, 0.001, 0.001, 0.0001, 0.0001, 0.00001, 0.00001]
  cosine = optimization.learning_rate_schedule(optimization.OptimizerConfig(), 100)
  assert float(cosine(0)) == pytest.approx(0.01) and float(cosine(100)) == pytest.approx(0)
  assert float(cosine(50)) == pytest.approx(0.005)

  # Accumulating 2 batches of 4 updates once, as one batch of 8 would.
  rng = np.random.default_rng(0)
  x, y = rng.normal(size=(8, 5)).astype(np.float32), rng.normal(size=(8, 1)).astype(np.float32)
  results = []
  for accumulation, batches in ((2, (x[:4], x[4:])), (1, (x,))):
    keras.utils.set_random_seed(0)
    net = keras.Sequential([keras.Input((5,)), keras.layers.Dense(1)])
    net.compile(optimization.make_optimizer(optimization.OptimizerConfig(
        learning_rate=0.1, momentum=0.0, weight_decay=0.0, schedule="step",
        decay_every_steps=1000, accumulation_steps=accumulation), 10), "mse")
    start = net.get_weights()[0].copy()
    for i, batch in enumerate(batches):
      net.train_on_batch(batch, y[4 * i:4 * i + 4] if accumulation == 2 else y)
      if accumulation == 2 and i == 0:
        np.testing.assert_array_equal(net.get_weights()[0], start)
    results.append(net.get_weights()[0])
  np.testing.assert_allclose(results[0], results[1], rtol=1e-5)


_MIRRORED_SCRIPT = """
import sys
import numpy as np, tensorflow as tf, keras
cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
from sjft_tf.training import losses, model as model_lib
import training_fixtures as fx
from test_training import _mixed_batch

def build(strategy, config):
  with strategy.scope():
    keras.utils.set_random_seed(0)
    net = model_lib.build_joint_model(config, 3, 4)
    losses.compile_joint(net, keras.optimizers.SGD(0.1))
  return net

images, labels = _mixed_batch(np.random.default_rng(0))
results = {}
strategies = (("one", tf.distribute.OneDeviceStrategy("/cpu:0")),
              ("two", tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])))
for frozen_bn in (False, True):
  config = fx.TINY_MODEL if not frozen_bn else type(fx.TINY_MODEL)(**{
      **fx.TINY_MODEL.__dict__, "freeze": "_bn$"})
  for name, strategy in strategies:
    net = build(strategy, config)
    data = tf.data.Dataset.from_tensors((images, labels))
    logs = net.fit(data, epochs=1, verbose=0).history
    results[(frozen_bn, name)] = (logs["loss"][0], net.get_layer("target").kernel.numpy())
  if not frozen_bn:
    # Each replica normalises its own half batch: the loss is the mean of the halves'.
    halves = []
    for rows in (slice(0, 4), slice(4, 8)):
      net = build(tf.distribute.get_strategy(), config)
      x = images[rows]
      y = {k: v[rows] for k, v in labels.items()}
      halves.append(float(net.compute_loss(x, y, net(x, training=True))))
    results["halves"] = np.mean(halves)
np.savez(sys.argv[1], loss_one=results[(False, "one")][0], loss_two=results[(False, "two")][0],
         halves=results["halves"], frozen_one=results[(True, "one")][0],
         frozen_two=results[(True, "two")][0],
         kernel_one=results[(True, "one")][1], kernel_two=results[(True, "two")][1])
"""


def test_mirrored_on_two_cpus_matches_one_device(tmp_path):
  out = tmp_path / "mirrored.npz"
  done = _run_python(_MIRRORED_SCRIPT, str(out))
  assert done.returncode == 0, done.stderr[-3000:]
  r = np.load(out)
  # Batch norm in inference mode: the same loss and the same update as one device.
  assert float(r["frozen_two"]) == pytest.approx(float(r["frozen_one"]), rel=1e-5)
  np.testing.assert_allclose(r["kernel_two"], r["kernel_one"], rtol=1e-4, atol=1e-7)
  # Batch norm training (statistics per replica, as in Keras): the mean of the halves.
  assert float(r["loss_two"]) == pytest.approx(float(r["halves"]), rel=1e-5)


def _config(problem, output_dir, **kwargs):
  values = dict(output_dir=str(output_dir), first_round=problem, model=fx.TINY_MODEL,
                pairs=fx.PAIRS, total_steps=24, steps_per_epoch=6, epochs_per_round=2,
                strategy="one_device", verbose=0,
                optimizer=optimization.OptimizerConfig(learning_rate=0.05))
  values.update(kwargs)
  return train_lib.TrainConfig(**values)


@pytest.fixture(scope="module")
def whole_run(problem, tmp_path_factory):
  """(report, folder) of the uninterrupted run every resumed run is compared with."""
  folder = tmp_path_factory.mktemp("whole")
  return train_lib.train(_config(problem, folder)), folder


_KILLED_SCRIPT = """
import os, signal, sys, keras
from sjft_tf.training import train as train_lib
from test_training import _config

class Kill(keras.callbacks.Callback):
  def on_epoch_end(self, epoch, logs=None):
    if epoch == 2:  # after epoch 3's backup: round 1 has started
      os.kill(os.getpid(), signal.SIGKILL)

train_lib.train(_config(sys.argv[1], sys.argv[2]), extra_callbacks=[Kill()])
"""


def test_a_killed_run_resumes_where_it_stopped(problem, tmp_path, whole_run):
  killed = _run_python(_KILLED_SCRIPT, problem, str(tmp_path / "resumed"))
  assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
  with open(tmp_path / "resumed" / "backup" / "state" / "training_metadata.json") as f:
    assert json.load(f)["epoch"] == 3
  assert not (tmp_path / "resumed" / "model.keras").exists()

  resumed = train_lib.train(_config(problem, tmp_path / "resumed"))
  assert resumed["epochs_trained_this_call"] == 1
  whole, whole_dir = whole_run
  assert whole["epochs_trained_this_call"] == 4
  # The resumed run continued the same stream of pairs from the same weights.
  a = keras.saving.load_model(tmp_path / "resumed" / "model.keras")
  b = keras.saving.load_model(whole_dir / "model.keras")
  for wa, wb in zip(a.get_weights(), b.get_weights()):
    np.testing.assert_allclose(wa, wb, rtol=1e-4, atol=1e-5)
  tags = {value.tag for path in (whole_dir / "logs" / "train").iterdir()
          for event in tf.compat.v1.train.summary_iterator(str(path))
          for value in event.summary.value}
  assert tags >= {f"epoch_{name}" for name in (
      "loss", "target_loss", "source_loss", "target_accuracy", "source_accuracy",
      "learning_rate", "selection_round", "mean_level", "mean_pool_size", "selected_images")}
  history = (tmp_path / "resumed" / "history.csv").read_text().splitlines()
  assert [line.split(",")[0] for line in history[1:]] == ["0", "1", "2", "3"]
  # Round 1 came from the predictions after round 0, by the level rule.
  first = manifest.load(problem)
  second = manifest.load(os.path.join(tmp_path, "resumed", "rounds", "round_001"))
  with np.load(tmp_path / "resumed" / "rounds" / "predictions_after_round_000.npz") as p:
    order = {i: n for n, i in enumerate(p["ids"].tolist())}
    probabilities = p["probabilities"][[order[i] for i in first.target_ids.tolist()]]
  np.testing.assert_array_equal(second.levels, levels_lib.update_levels(
      first.levels, probabilities, first.target_labels))
  # Same configuration or nothing: a rerun with other settings is refused.
  with pytest.raises(ValueError, match="holds another configuration"):
    train_lib.train(_config(problem, tmp_path / "resumed", total_steps=30))
  # So is one with the same settings whose first round was made again since.
  round_json = os.path.join(problem, manifest.JSON_FILENAME)
  with open(round_json) as f:
    original = f.read()
  try:
    with open(round_json, "w") as f:
      f.write(original.replace('"round": 0', '"round":  0'))
    with pytest.raises(ValueError, match="trained on other inputs"):
      train_lib.train(_config(problem, tmp_path / "resumed"))
  finally:
    with open(round_json, "w") as f:
      f.write(original)


_KILLED_WHILE_WRITING = """
import os, signal, sys, keras
from sjft_tf.training import train as train_lib
from test_training import _config

where = sys.argv[3]
original = keras.Model.save_weights if where == "backup" else keras.Model.save
calls = []

def half_written_then_killed(self, filepath, *args, **kwargs):
  calls.append(filepath)
  if len(calls) == 3 or where == "final":  # the third backup, or the final model
    original(self, filepath, *args, **kwargs)
    with open(filepath, "r+b") as f:
      f.truncate(os.path.getsize(filepath) // 2)
    os.kill(os.getpid(), signal.SIGKILL)
  return original(self, filepath, *args, **kwargs)

if where == "backup":
  keras.Model.save_weights = half_written_then_killed
else:
  keras.Model.save = half_written_then_killed
train_lib.train(_config(sys.argv[1], sys.argv[2]))
"""


@pytest.mark.parametrize("where", ["backup", "final"])
def test_a_kill_while_writing_the_backup_or_the_model_resumes_cleanly(problem, tmp_path,
                                                                      where, whole_run):
  run = tmp_path / "killed"
  killed = _run_python(_KILLED_WHILE_WRITING, problem, str(run), where)
  assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
  resumed = train_lib.train(_config(problem, run))
  whole, whole_dir = whole_run
  a = keras.saving.load_model(run / "model.keras")
  b = keras.saving.load_model(whole_dir / "model.keras")
  for wa, wb in zip(a.get_weights(), b.get_weights()):
    np.testing.assert_allclose(wa, wb, rtol=1e-4, atol=1e-5)
  history = (run / "history.csv").read_text().splitlines()
  assert [line.split(",")[0] for line in history[1:]] == ["0", "1", "2", "3"]
  assert not any("val_" in column for column in history[0].split(","))
  assert resumed["final_epoch_logs"] == whole["final_epoch_logs"] != {}
  assert resumed["epochs_trained_this_call"] == (2 if where == "backup" else 0)
  leftovers = [p for p in run.rglob("*") if ".tmp" in p.name or p.name.startswith("state.old")]
  assert not leftovers and not (run / "backup").exists()


def test_the_callback_drives_rounds_in_a_user_script(problem, tmp_path):
  done = subprocess.run(
      [sys.executable, "examples/selective_fit.py", f"--first_round={problem}",
       f"--output_dir={tmp_path}", "--epochs=3", "--epochs_per_round=1",
       "--steps_per_epoch=3", f"--input_size={fx.IMAGE_SIZE}", "--batch_size=8"],
      cwd=REPO, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"), capture_output=True,
      text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-3000:]
  assert "selection rounds: [0, 1, 2]" in done.stdout
  previous = manifest.load(problem)
  for round_index in (1, 2):
    current = manifest.load(manifest.round_dir(str(tmp_path / "rounds"), round_index))
    with np.load(tmp_path / "rounds" / f"predictions_after_round_{round_index - 1:03d}.npz") as p:
      assert sorted(p["ids"].tolist()) == sorted(previous.target_ids.tolist())
      order = {i: n for n, i in enumerate(p["ids"].tolist())}
      probabilities = p["probabilities"][[order[i] for i in previous.target_ids.tolist()]]
    np.testing.assert_array_equal(current.levels, levels_lib.update_levels(
        previous.levels, probabilities, previous.target_labels))
    previous = current


_WORKER_SCRIPT = """
import sys
from sjft_tf.training import train as train_lib
from test_training import _config
train_lib.train(_config(sys.argv[1], sys.argv[2], strategy="multi_worker", total_steps=12,
                        epochs_per_round=1))
"""


def test_two_workers_on_loopback_train_with_the_custom_loop(problem, tmp_path):
  import socket
  ports = []
  for _ in range(2):
    with socket.socket() as s:
      s.bind(("localhost", 0))
      ports.append(s.getsockname()[1])
  cluster = {"worker": [f"localhost:{p}" for p in ports]}
  workers = [subprocess.Popen(
      [sys.executable, "-c", textwrap.dedent(_WORKER_SCRIPT), problem, str(tmp_path)],
      cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
      env=dict(_SCRIPT_ENV, TF_CONFIG=json.dumps(
          {"cluster": cluster, "task": {"type": "worker", "index": i}})))
      for i in range(2)]
  outputs = [w.communicate(timeout=300)[0] for w in workers]
  assert [w.returncode for w in workers] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
  chief = json.loads((tmp_path / "train_report.json").read_text())
  other = json.loads((tmp_path / "worker_1" / "train_report.json").read_text())
  assert chief["replicas"] == 2
  # One model trained together: both workers saw the same all-reduced metrics.
  assert chief["final_epoch_logs"] == other["final_epoch_logs"]
  assert chief["final_epoch_logs"]["selection_round"] == 1.0
  assert (tmp_path / "rounds" / "round_001" / "selection.json").exists()


def test_cli_trains_the_target_alone_and_refuses_ambiguous_input(problem, tmp_path):
  target_dir = manifest.load(problem).provenance.target.spec_dir
  bin_dir = os.path.dirname(sys.executable)
  args = [os.path.join(bin_dir, "sjft-train"), f"--output_dir={tmp_path}",
          "--base=MobileNet", "--alpha=0.25", "--weights=", f"--input_size={fx.IMAGE_SIZE}",
          "--resize_size=36", "--batch_size=4", "--total_steps=4", "--steps_per_epoch=2",
          "--strategy=one_device"]
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  done = subprocess.run(args + [f"--target_spec_dir={target_dir}"], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-3000:]
  assert "trained 2 epochs of" in done.stdout and "images/s" in done.stdout
  assert "3 target classes, 0 source-head classes" in done.stdout
  again = subprocess.run(args + [f"--target_spec_dir={target_dir}"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=300)
  assert again.returncode == 0 and again.stdout.startswith("reused the finished run")
  assert "images/s" not in again.stdout  # nothing trained, no speed claimed
  trained = keras.saving.load_model(tmp_path / "model.keras")
  assert list(trained.output_names) == ["target"]
  assert trained.get_layer("target").kernel.shape == (256, 3)
  both = subprocess.run(args + [f"--target_spec_dir={target_dir}", f"--first_round={problem}"],
                        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert both.returncode != 0 and "give --first_round" in both.stderr


def _damage(path, how: str) -> None:
  """Cuts a file to half, empties it, or overwrites it with garbage of its size."""
  data = open(path, "rb").read()
  with open(path, "wb") as f:
    f.write({"half": data[:len(data) // 2], "empty": b"",
             "garbage": np.random.default_rng(1).bytes(len(data))}[how])


def test_a_damaged_backup_or_history_is_never_resumed_from(problem, tmp_path, whole_run,
                                                           capsys, caplog):
  """A killed run whose backup state or history.csv was then damaged: a cut history is
  rebuilt from the state's copy; a damaged state restarts the run with one line; both
  end with the uninterrupted run's model and a whole history; a damaged later round is
  made again from its predictions. A finished run's damaged history, later round or
  record is remade and the run reused; what cannot be remade is refused by name, with
  advice that works when followed."""
  import shutil
  killed_dir = tmp_path / "killed"
  killed = _run_python(_KILLED_SCRIPT, problem, str(killed_dir))
  assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
  whole, whole_dir = whole_run
  state = os.path.join("backup", "state")
  cases = [("history.csv", "half", 1), (os.path.join(state, "latest.weights.h5"), "half", 4),
           (os.path.join(state, "latest.weights.h5"), "garbage", 4),
           (os.path.join(state, "training_metadata.json"), "garbage", 4),
           (os.path.join(state, "training_metadata.json"), "empty", 4),
           # A later round written before the kill: made again from its predictions.
           (os.path.join("rounds", "round_001", "selection.npz"), "half", 1)]
  for index, (name, how, epochs) in enumerate(cases):
    run = tmp_path / f"case{index}"
    shutil.copytree(killed_dir, run)
    _damage(run / name, how)
    capsys.readouterr()
    resumed = train_lib.train(_config(problem, run))
    assert resumed["epochs_trained_this_call"] == epochs, (name, how)
    if epochs == 4:
      assert os.path.basename(name) in capsys.readouterr().out
    if "rounds" in name:
      assert "round_001 is damaged: made again from the predictions" in capsys.readouterr().out
    text = (run / "history.csv").read_bytes()
    assert text.count(b"\r\n") == 5 and text.count(b"\n") == 5, text
    assert [line.split(b",")[0] for line in text.splitlines()[1:]] == [b"0", b"1", b"2", b"3"]
    a = keras.saving.load_model(run / "model.keras")
    b = keras.saving.load_model(whole_dir / "model.keras")
    for wa, wb in zip(a.get_weights(), b.get_weights()):
      np.testing.assert_allclose(wa, wb, rtol=1e-4, atol=1e-5)
  # The round damaged with the predictions it was made from, past its start: refused
  # with advice that, followed, trains the run again.
  run = tmp_path / "both"
  shutil.copytree(killed_dir, run)
  for name in ("round_001/selection.npz", "predictions_after_round_000.npz"):
    _damage(run / "rounds" / name, "half")
  with pytest.raises(ValueError, match=f"round_001 is damaged and so is .*: delete {run} "):
    train_lib.train(_config(problem, run))
  shutil.rmtree(run)
  assert train_lib.train(_config(problem, run))["epochs_trained_this_call"] == 4

  # A finished run: what its model does not depend on is remade, the run reused.
  finished = tmp_path / "case0"
  stored = json.loads((finished / "train_report.json").read_text())
  rounds = os.path.join("rounds", "round_001")
  # (timing.json, where a round has one, is a file of its round folder like these.)
  for name in ("history.csv", os.path.join(rounds, "selection.npz"),
               os.path.join(rounds, "selection.json"), "sjft_files.json"):
    original = (finished / name).read_bytes()
    _damage(finished / name, "half")
    capsys.readouterr()
    assert train_lib.train(_config(problem, finished)) == stored, name  # nothing trained
    assert (finished / name).read_bytes() == original, name
    assert f"{os.path.basename(name)} is damaged" in capsys.readouterr().out, name
  predictions = finished / "rounds" / "predictions_after_round_000.npz"
  _damage(predictions, "garbage")
  assert train_lib.train(_config(problem, finished)) == stored
  assert not predictions.exists() and "removed" in capsys.readouterr().out
  assert integrity.damaged_names(str(finished)) == {}
  _damage(finished / rounds / "selection.npz", "half")  # now beyond remaking
  with pytest.raises(ValueError, match=f"has a damaged file, .*round_001.*: delete {finished}"):
    train_lib.train(_config(problem, finished))
  # A cut report is named (not the model) and the run trained again.
  _damage(tmp_path / "case1" / "train_report.json", "half")
  with caplog.at_level("WARNING"):
    again = train_lib.train(_config(problem, tmp_path / "case1"))
  assert again["epochs_trained_this_call"] == 4
  assert "train_report.json is damaged: training the run again" in caplog.text
  assert "model.keras is damaged" not in caplog.text


_BASELINE_SCRIPT = """
import sys
from sjft_tf.training import train as train_lib
from test_training import _config

joint = _config(sys.argv[1], sys.argv[2] + "_joint", epochs_per_round=0)
if sys.argv[3] == "after_joint":  # as sjft-run trains it: the joint run first, one process
  train_lib.train(joint)
train_lib.train(train_lib.target_only(joint, sys.argv[2]))
"""


def test_a_baseline_is_a_function_of_its_seed_in_any_process(problem, tmp_path):
  """The target-only baseline trained alone in a process, and after a joint run in
  another (as sjft-run's first invocation does), has the same weights."""
  runs = {}
  for order in ("alone", "after_joint"):
    done = _run_python(_BASELINE_SCRIPT, problem, str(tmp_path / order), order)
    assert done.returncode == 0, done.stderr[-3000:]
    runs[order] = keras.saving.load_model(tmp_path / order / "model.keras").get_weights()
  for a, b in zip(runs["alone"], runs["after_joint"]):
    np.testing.assert_array_equal(a, b)
