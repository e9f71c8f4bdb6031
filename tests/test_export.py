"""Evaluation and export: metrics against NumPy, the SavedModel against Keras, TF
Serving's request formats, bad inputs."""

import base64
import io
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from sjft_tf import files, outputs
from sjft_tf.data import pipeline
from sjft_tf.evaluation import evaluate, metrics
from sjft_tf.export import serving
from sjft_tf.selection import manifest
from sjft_tf.training import optimization, predict, train
from sjft_tf.training import sampler as sampler_lib
import training_fixtures as fx

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """(run_dir, target spec dir): a joint run of 8 batches on the small problem."""
  root = tmp_path_factory.mktemp("export")
  first_round = fx.make_problem(str(root))
  run_dir = str(root / "run")
  train.train(train.TrainConfig(
      output_dir=run_dir, first_round=first_round, model=fx.TINY_MODEL, pairs=fx.PAIRS,
      total_steps=8, steps_per_epoch=4, strategy="one_device", verbose=0,
      optimizer=optimization.OptimizerConfig(learning_rate=0.05)))
  return run_dir, manifest.load(first_round).provenance.target.spec_dir


@pytest.fixture(scope="module")
def exported(run, tmp_path_factory):
  run_dir, _ = run
  trained = outputs.TrainedRun.read(run_dir)
  model = trained.load_model()
  export_dir = str(tmp_path_factory.mktemp("served"))
  path = serving.export(model, trained.target_class_names, export_dir,
                        trained.resize_size, trained.crop_size, top_k=2)
  return trained, model, export_dir, path, tf.saved_model.load(path)


def test_metrics_match_a_hand_count():
  labels = np.array([0, 0, 1, 2, 2, 2])
  probabilities = np.eye(4)[[0, 1, 1, 2, 0, 2]]
  result = metrics.classification_metrics(labels, probabilities, ["a", "b", "c", "d"])
  assert result["top1"] == pytest.approx(4 / 6)
  assert result["mean_per_class_accuracy"] == pytest.approx((0.5 + 1 + 2 / 3) / 3)
  assert result["per_class"]["d"] == {"images": 0, "accuracy": None}
  assert result["confusion_matrix"][0] == [1, 1, 0, 0]
  assert result["confusion_matrix"][2] == [1, 0, 2, 0]


def test_ten_crops_are_the_centre_the_corners_and_their_flips():
  image = np.arange(6 * 7 * 3, dtype=np.float32).reshape(6, 7, 3)
  views = pipeline.ten_crops(tf.constant(image), 4).numpy()
  expected = [image[1:5, 1:5], image[:4, :4], image[:4, 3:], image[2:, :4], image[2:, 3:]]
  np.testing.assert_array_equal(views[:5], expected)
  np.testing.assert_array_equal(views[5:], [v[:, ::-1] for v in expected])


def test_evaluation_writes_what_the_model_predicts(run, tmp_path):
  run_dir, spec_dir = run
  results = evaluate.evaluate(run_dir, spec_dir, evaluate.EvalConfig(batch_size=5))
  json_path, png_path = evaluate.result_paths(run_dir, "test")
  assert json.loads(open(json_path).read()) == json.loads(json.dumps(results))
  assert open(png_path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
  # Asked again (a subset of the views), the evaluation on disk is returned as it is;
  # other sizes, or reuse=False, evaluate anew.
  written = os.path.getmtime(json_path)
  assert evaluate.evaluate(run_dir, spec_dir, evaluate.EvalConfig(views=("centre",))) == (
      json.loads(json.dumps(results)))
  assert os.path.getmtime(json_path) == written
  # Freshness is the model file's fingerprint, not its time: a touched (e.g. copied)
  # model keeps its evaluation.
  model_path = os.path.join(run_dir, outputs.MODEL_FILENAME)
  assert results["model"] == files.fingerprint({}, model_path)
  os.utime(model_path, (written + 60, written + 60))
  evaluate.evaluate(run_dir, spec_dir, evaluate.EvalConfig(views=("centre",)))
  assert os.path.getmtime(json_path) == written
  # The images too are known by their fingerprint, not their folder: a copy of the
  # dataset keeps the evaluation, the split ingested again from other files does not.
  copy = shutil.copytree(spec_dir, tmp_path / "copy")
  evaluate.evaluate(run_dir, str(copy), evaluate.EvalConfig(views=("centre",)))
  assert os.path.getmtime(json_path) == written
  record_path = next(copy.glob("test-*.tfrecord.json"))
  record = json.loads(record_path.read_text())
  record_path.write_text(json.dumps({**record, "fingerprint": "0" * 40}))
  evaluate.evaluate(run_dir, str(copy), evaluate.EvalConfig(views=("centre",)))
  assert os.path.getmtime(json_path) > written
  other = evaluate.evaluate(run_dir, spec_dir, evaluate.EvalConfig(views=("centre",),
                                                                    resize_size=40))
  assert other["resize_size"] == 40 and set(other["views"]) == {"centre"}
  results = evaluate.evaluate(run_dir, spec_dir, evaluate.EvalConfig(batch_size=5))
  assert results["resize_size"] == fx.PAIRS.resize_size and os.path.getmtime(json_path) > written
  trained = outputs.TrainedRun.read(run_dir)
  model = trained.load_model()
  reader = pipeline.ReaderConfig(batch_size=64, resize_size=trained.resize_size,
                                 crop_size=trained.crop_size)
  examples = list(pipeline.make_dataset(spec_dir, "test", reader, training=False).unbatch())
  images = np.stack([ex["image"] for ex in examples])
  labels = np.array([int(ex["label"]) for ex in examples])
  centre = tf.nn.softmax(model(images, training=False)["target"]).numpy()
  assert results["views"]["centre"] == metrics.classification_metrics(
      labels, centre, trained.target_class_names)
  # Whether each image is right, in spec order (the verdicts' paired intervals).
  np.testing.assert_array_equal(
      metrics.unpack_correct(results["views"]["centre"]["correct"], len(labels)),
      centre.argmax(1) == labels)
  # An evaluation written without them (an earlier version) is made again.
  stored = json.loads(open(json_path).read())
  del stored["views"]["centre"]["correct"]
  open(json_path, "w").write(json.dumps(stored))
  again = evaluate.evaluate(run_dir, spec_dir, evaluate.EvalConfig(views=("centre",)))
  assert again["views"]["centre"]["correct"] == results["views"]["centre"]["correct"]
  # Ten crops: the mean of the softmax over the views of `ten_crops`.
  resized = [pipeline.decode_resized(ex["image/encoded"], ex["image/format"],
                                     ex["image/height"], ex["image/width"],
                                     trained.resize_size)
             for ex in tf.data.TFRecordDataset(
                 pipeline.spec_lib.load_spec(spec_dir).shard_paths("test")).map(
                     pipeline.tfrecord.parse_example)]
  views = np.stack([pipeline.ten_crops(r, trained.crop_size) for r in resized])
  averaged = tf.nn.softmax(model(views.reshape(-1, *views.shape[2:]),
                                         training=False)["target"]).numpy()
  averaged = averaged.reshape(len(views), 10, -1).mean(axis=1)
  _, _, ours = predict.target_probabilities(model, spec_dir, "test", reader,
                                            "ten_crops")
  np.testing.assert_allclose(ours, averaged, atol=1e-6)
  assert results["views"]["ten_crops"]["top1"] == pytest.approx(
      np.mean(averaged.argmax(1) == labels))


def test_the_served_model_reproduces_keras_and_the_evaluation(run, exported):
  run_dir, spec_dir = run
  trained, model, _, path, loaded = exported
  assert os.path.basename(path) == "1"
  stored = pipeline.load_encoded(spec_dir, ["test"])
  served = loaded.signatures[serving.SERVING_SIGNATURE](
      images=tf.constant(stored["encoded"]))
  reader = pipeline.ReaderConfig(batch_size=64, resize_size=trained.resize_size,
                                 crop_size=trained.crop_size)
  ids, labels, keras_probabilities = predict.target_probabilities(
      model, spec_dir, "test", reader)
  assert ids.tolist() == stored["id"].tolist()
  np.testing.assert_allclose(served["probabilities"].numpy(), keras_probabilities, atol=1e-5)
  top = np.argsort(-keras_probabilities, axis=1, kind="stable")[:, :2]
  np.testing.assert_array_equal(served["top_k_indices"].numpy()[:, 0], top[:, 0])
  assert served["top_k_classes"].numpy()[0, 0].decode() == trained.target_class_names[top[0, 0]]
  evaluation = evaluate.evaluate(run_dir, spec_dir, evaluate.EvalConfig(views=("centre",)))
  served_top1 = np.mean(served["probabilities"].numpy().argmax(1) == labels)
  assert served_top1 == evaluation["views"]["centre"]["top1"]
  # The pixels signature takes the evaluation's crops.
  images = np.stack([ex["image"] for ex in pipeline.make_dataset(
      spec_dir, "test", reader, training=False).unbatch()])
  pixels = loaded.signatures[serving.PIXELS_SIGNATURE](images=tf.constant(images))
  np.testing.assert_allclose(pixels["probabilities"].numpy(), keras_probabilities, atol=1e-5)


def test_saved_model_cli_shows_the_documented_signatures(exported):
  path = exported[3]
  shown = subprocess.run([os.path.join(BIN, "saved_model_cli"), "show", "--dir", path, "--all"],
                         capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
  assert shown.returncode == 0, shown.stderr[-2000:]
  text = " ".join(shown.stdout.split())
  crop = fx.IMAGE_SIZE
  for expected in [
      "signature_def['serving_default']",
      "inputs['images'] tensor_info: dtype: DT_STRING shape: (-1)",
      "outputs['probabilities'] tensor_info: dtype: DT_FLOAT shape: (-1, 3)",
      "outputs['top_k_classes'] tensor_info: dtype: DT_STRING shape: (-1, 2)",
      "outputs['top_k_indices'] tensor_info: dtype: DT_INT32 shape: (-1, 2)",
      "outputs['top_k_probabilities'] tensor_info: dtype: DT_FLOAT shape: (-1, 2)",
      "signature_def['predict_images']",
      f"inputs['images'] tensor_info: dtype: DT_FLOAT shape: (-1, {crop}, {crop}, 3)"]:
    assert expected in text, expected


def _encoded(array: np.ndarray, image_format: str) -> bytes:
  out = io.BytesIO()
  Image.fromarray(array).save(out, format=image_format)
  return out.getvalue()


def test_tf_serving_requests_feed_the_signature(exported):
  from tensorflow_serving.apis import predict_pb2
  *_, loaded = exported
  rng = np.random.default_rng(0)
  images = [_encoded(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8), "JPEG"),
            _encoded(rng.integers(0, 256, (30, 30, 3), dtype=np.uint8), "PNG")]
  signature = loaded.signatures[serving.SERVING_SIGNATURE]
  direct = signature(images=tf.constant(images))["probabilities"].numpy()

  request = predict_pb2.PredictRequest()
  request.model_spec.name = "sjft"
  request.model_spec.signature_name = serving.SERVING_SIGNATURE
  request.inputs[serving.INPUT_NAME].CopyFrom(tf.make_tensor_proto(images, dtype=tf.string))
  received = predict_pb2.PredictRequest.FromString(request.SerializeToString())
  fed = tf.make_ndarray(received.inputs[serving.INPUT_NAME])
  np.testing.assert_array_equal(signature(images=tf.constant(fed))["probabilities"], direct)

  # REST: {"signature_name", "instances": [{"b64": ...}]}; binary values go base64.
  body = json.dumps({"signature_name": serving.SERVING_SIGNATURE,
                     "instances": [{"b64": base64.b64encode(b).decode()} for b in images]})
  decoded = [base64.b64decode(row["b64"]) for row in json.loads(body)["instances"]]
  np.testing.assert_array_equal(signature(images=tf.constant(decoded))["probabilities"],
                                direct)


def test_bad_images_fail_their_request_and_odd_ones_work(exported):
  *_, loaded = exported
  signature = loaded.signatures[serving.SERVING_SIGNATURE]
  rng = np.random.default_rng(1)
  rgb = rng.integers(0, 256, (36, 36, 3), dtype=np.uint8)
  good = _encoded(rgb, "PNG")
  for bad, message in [(b"", "request image.*1.*is empty"),
                       (b"GIF89a-not-supported", "request image.*1.*neither JPEG nor PNG"),
                       (_encoded(rgb, "JPEG")[:200], "JPEG")]:
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
      signature(images=tf.constant([good, bad]))
  # The next request is served as if nothing happened.
  probabilities = signature(images=tf.constant([good]))["probabilities"].numpy()
  assert probabilities.sum() == pytest.approx(1.0, abs=1e-5)

  # Alpha is dropped (as at ingestion); grayscale becomes three equal channels.
  rgba = np.concatenate([rgb, rng.integers(0, 256, (36, 36, 1), dtype=np.uint8)], axis=2)
  np.testing.assert_allclose(
      signature(images=tf.constant([_encoded(rgba, "PNG")]))["probabilities"], probabilities,
      atol=1e-6)
  gray = rgb[..., 0]
  np.testing.assert_allclose(
      signature(images=tf.constant([_encoded(gray, "PNG")]))["probabilities"],
      signature(images=tf.constant([_encoded(np.stack([gray] * 3, -1), "PNG")]))[
          "probabilities"], atol=1e-6)
  gray_jpeg = signature(images=tf.constant([_encoded(gray, "JPEG")]))["probabilities"]
  assert gray_jpeg.shape == (1, 3) and float(tf.reduce_sum(gray_jpeg)) == pytest.approx(1, abs=1e-5)


def test_cli_evaluates_and_exports_new_versions_only(run, exported, tmp_path):
  run_dir, spec_dir = run
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  evaluated = subprocess.run(
      [os.path.join(BIN, "sjft-eval"), f"--run_dir={run_dir}", f"--spec_dir={spec_dir}",
       "--split=train", "--views=centre"], capture_output=True, text=True, env=env, timeout=300)
  assert evaluated.returncode == 0, evaluated.stderr[-2000:]
  result = json.loads(open(evaluate.result_paths(run_dir, "train")[0]).read())
  assert f"train (12 images), centre: top-1 {result['views']['centre']['top1']:.4f}" in (
      evaluated.stdout)
  export_dir = exported[2]
  for expected in ("2", "3"):
    done = subprocess.run([os.path.join(BIN, "sjft-export"), f"--run_dir={run_dir}",
                           f"--export_dir={export_dir}"], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith(os.path.join(export_dir, expected))
  # Each version records its model (TF Serving ignores assets.extra).
  assert serving.latest_provenance(export_dir) == {
      "run_dir": os.path.abspath(run_dir), "model": outputs.TrainedRun.read(
          run_dir).model_fingerprint()}
  again = subprocess.run([os.path.join(BIN, "sjft-export"), f"--run_dir={run_dir}",
                          f"--export_dir={export_dir}", "--version=2"],
                         capture_output=True, text=True, env=env, timeout=300)
  assert again.returncode != 0 and "versions are never overwritten" in again.stderr
  assert sorted(n for n in os.listdir(export_dir) if not n.startswith(".")) == ["1", "2", "3"]
  unfinished = subprocess.run([os.path.join(BIN, "sjft-eval"), f"--run_dir={tmp_path}",
                               f"--spec_dir={spec_dir}"], capture_output=True, text=True,
                              env=env, timeout=300)
  assert unfinished.returncode != 0 and "is not a finished sjft-train run" in unfinished.stderr


def test_a_moved_tree_of_data_selection_and_run_evaluates_exports_and_resumes(run, tmp_path):
  run_dir, spec_dir = run
  root = os.path.dirname(run_dir)
  moved = tmp_path / "elsewhere"
  before = evaluate.evaluate(run_dir, spec_dir, evaluate.EvalConfig(split="test"))
  shutil.copytree(root, moved)
  away = root + ".away"
  os.rename(root, away)  # nothing may still point at the old place
  try:
    first_round = str(moved / "selection" / "round_000")
    for name in ("selection/round_000/selection.json", "run/train_config.json"):
      assert root not in (moved / name).read_text(), name
    selection = manifest.load(first_round)
    assert selection.provenance.target.spec_dir == str(moved / "target")
    assert sampler_lib.PairSampler(first_round, fx.PAIRS).target_spec_dir == str(
        moved / "target")
    # The finished run is recognised with the moved paths: nothing is trained again.
    model_time = os.path.getmtime(moved / "run" / outputs.MODEL_FILENAME)
    train.train(train.TrainConfig(
        output_dir=str(moved / "run"), first_round=first_round, model=fx.TINY_MODEL,
        pairs=fx.PAIRS, total_steps=8, steps_per_epoch=4, strategy="one_device",
        verbose=0, optimizer=optimization.OptimizerConfig(learning_rate=0.05)))
    assert os.path.getmtime(moved / "run" / outputs.MODEL_FILENAME) == model_time
    # Its evaluation is recognised too (same model and images by fingerprint).
    evaluation_json = moved / "run" / "evaluation_test.json"
    evaluation_time = os.path.getmtime(evaluation_json)
    after = evaluate.evaluate(str(moved / "run"), str(moved / "target"),
                              evaluate.EvalConfig(split="test"))
    assert os.path.getmtime(evaluation_json) == evaluation_time
    assert after["views"]["centre"]["top1"] == before["views"]["centre"]["top1"]
    recomputed = evaluate.evaluate(str(moved / "run"), str(moved / "target"),
                                   evaluate.EvalConfig(split="test", reuse=False))
    assert recomputed["views"]["centre"]["top1"] == before["views"]["centre"]["top1"]
    trained = outputs.TrainedRun.read(str(moved / "run"))
    model = trained.load_model()
    path = serving.export(model, trained.target_class_names, str(tmp_path / "served"),
                          trained.resize_size, trained.crop_size)
    assert os.path.exists(os.path.join(path, "saved_model.pb"))
  finally:
    os.rename(away, root)


def test_a_damaged_version_is_never_reported_as_exported(run, tmp_path):
  """Each file a SavedModel needs damaged in turn, one way each (cut to half, emptied,
  same-size garbage): verify_version names it; current_export replaces the version
  (same number) and the new one loads."""
  run_dir, _ = run
  export_dir = str(tmp_path / "export")
  config = serving.ExportConfig(run_dir=run_dir, export_dir=export_dir, top_k=2)
  version, happened = serving.current_export(config)
  assert happened == "exported" and version == os.path.join(export_dir, "1")
  serving.verify_version(version)
  assert serving.current_export(config) == (version, "reused")
  data_file = next(n for n in os.listdir(os.path.join(version, "variables"))
                   if n.startswith("variables.data"))
  for name, damage in (("saved_model.pb", "half"),
                       (os.path.join("variables", "variables.index"), "empty"),
                       (os.path.join("variables", data_file), "garbage")):
    path = os.path.join(version, name)
    original = open(path, "rb").read()
    damaged = {"half": original[:len(original) // 2], "empty": b"",
               "garbage": np.random.default_rng(0).bytes(len(original))}[damage]
    with open(path, "wb") as f:
      f.write(damaged)
    with pytest.raises(ValueError, match=f"{os.path.basename(path)}.*is damaged"):
      serving.verify_version(version)
    replaced, happened = serving.current_export(config)
    assert replaced == version and happened.startswith("replaced")
    assert os.path.basename(path) in happened
    serving.verify_version(version)
    assert sorted(os.listdir(export_dir)) == ["1"]


def test_a_damaged_export_provenance_is_said_and_a_new_version_written(run, tmp_path):
  """The highest version's assets.extra/sjft_export.json damaged: whose model that version
  holds is unknown, so a new version is exported and the reason named in one line."""
  run_dir, _ = run
  config = serving.ExportConfig(run_dir=run_dir, export_dir=str(tmp_path / "export"))
  first, happened = serving.current_export(config)
  assert happened == "exported" and first.endswith("1")
  assert serving.current_export(config) == (first, "reused")
  record = os.path.join(first, serving.PROVENANCE_PATH)
  with open(record, "w") as f:
    f.write('{"run')
  second, happened = serving.current_export(config)
  assert second.endswith("2")
  assert happened == (f"exported (a new version: {record} is damaged, so {first} cannot be "
                      f"taken for this model)")
  assert serving.current_export(config) == (second, "reused")
