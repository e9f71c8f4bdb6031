"""The from-scratch base (CIFAR-style ResNet), CIFAR's pad-and-crop, and the source head's
held-out accuracy."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from sjft_tf import applications, errors
from sjft_tf.applications import cifar_resnet
from sjft_tf.data import pipeline
from sjft_tf.data import spec as spec_lib
from sjft_tf.selection import semantic
from sjft_tf.training import callbacks, model as model_lib, predict, train

import training_fixtures


def test_resnet8_has_the_probes_parameters_and_shapes():
  # The probe of METHOD.md section 6: 334,504 parameters with a 200-class top.
  assert cifar_resnet.CifarResNet(8, classes=200, input_shape=(32, 32, 3)).count_params() \
      == 334_504
  base = cifar_resnet.NETWORKS["CifarResNet8"](include_top=False, input_shape=(32, 32, 3))
  assert base.count_params() == 308_704
  assert base.output_shape == (None, 8, 8, 128)
  pooled = applications.build_application("CifarResNet20", None, (64, 64, 3), pooling="avg",
                                          alpha=0.5)
  assert pooled.output_shape == (None, 64)  # 4 x 16 channels
  assert len([l for l in pooled.layers if isinstance(l, keras.layers.Add)]) == 9
  assert cifar_resnet.stage_widths(2.0) == (64, 128, 256)
  assert applications.backbone("CifarResNet8").takes_alpha
  assert applications.backbone("MobileNetV2").takes_alpha
  assert not applications.backbone("EfficientNetLite0").takes_alpha
  with pytest.raises(ValueError, match="6n \\+ 2"):
    cifar_resnet.CifarResNet(10)
  with pytest.raises(ValueError, match="no ImageNet weights"):
    cifar_resnet.CifarResNet(8, weights="imagenet")


def test_resnet8_learns_a_small_problem_from_scratch():
  """Horizontal vs vertical stripes under noise: from chance to > 95% in 60 steps."""
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 2, 512)
  phase = rng.uniform(0, 2 * np.pi, (512, 1, 1))
  grid = np.arange(16, dtype=np.float32)[None, :, None]
  stripes = np.sin(grid * 1.2 + phase)
  images = np.where(labels[:, None, None] == 1, stripes, np.transpose(stripes, (0, 2, 1)))
  images = np.repeat(images[..., None], 3, axis=-1) + rng.normal(0, 0.5, (512, 16, 16, 3))
  images = images.astype(np.float32)
  keras.utils.set_random_seed(0)
  network = cifar_resnet.CifarResNet(8, classes=2, input_shape=(16, 16, 3), alpha=0.25)
  network.compile(keras.optimizers.SGD(0.05, momentum=0.9),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
  before = network.evaluate(images[384:], labels[384:], verbose=0)[1]
  network.fit(images[:384], labels[:384], batch_size=32, epochs=5, verbose=0)
  after = network.evaluate(images[384:], labels[384:], verbose=0)[1]
  assert before < 0.75 and after > 0.95, (before, after)


def test_pad_and_crop_translates_by_at_most_the_padding():
  image = tf.reshape(tf.range(8 * 8 * 3, dtype=tf.float32), (8, 8, 3))
  seen = set()
  for index in range(40):
    crop = pipeline.random_crop_and_flip(image, 8, tf.constant([3, index], tf.int64),
                                         padding=2).numpy()
    padded = np.pad(image.numpy(), ((2, 2), (2, 2), (0, 0)), mode="reflect")
    found = [(top, left, flip) for top in range(5) for left in range(5)
             for flip in (False, True)
             if np.array_equal(crop, (padded[top:top + 8, left:left + 8][:, ::-1] if flip
                                      else padded[top:top + 8, left:left + 8]))]
    assert found, "not a window of the reflected image"
    seen.update(found)
  assert len({(t, l) for t, l, _ in seen}) > 10 and {f for *_, f in seen} == {False, True}
  with pytest.raises(ValueError, match="crop_padding 8 must be below resize_size 8"):
    pipeline.make_dataset("unused", "train", pipeline.ReaderConfig(
        resize_size=8, crop_size=8, crop_padding=8), training=True)


def test_head_accuracy_maps_dataset_labels_to_the_heads_classes():
  dataset_classes = ["a", "b", "c", "d"]
  head_classes = ["d", "b"]  # "a" and "c" are not in the head
  probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.5, 0.5], [0.3, 0.7]])
  labels = np.array([3, 1, 1, 0, 2])  # d (right), b (right), b (wrong), a, c (left out)
  accuracy, counted = callbacks.head_accuracy(probabilities, labels, dataset_classes,
                                              head_classes)
  assert counted == 3 and accuracy == pytest.approx(2 / 3)
  assert callbacks.head_accuracy(probabilities[3:], labels[3:], dataset_classes,
                                 head_classes)[1] == 0


def test_source_validation_reads_the_source_head_and_refuses_a_sampled_split(tmp_path):
  first_round = training_fixtures.make_problem(str(tmp_path))
  source_dir = os.path.join(str(tmp_path), "source")
  names = spec_lib.load_spec(source_dir).class_names
  head_classes = names[::-1]  # another order than the dataset's
  model = model_lib.build_joint_model(training_fixtures.TINY_MODEL, 3, len(head_classes))
  reader = pipeline.ReaderConfig(batch_size=8, resize_size=36, crop_size=32)
  callback = callbacks.SourceValidation(source_dir, "train", head_classes, reader)
  callback.set_model(model)
  logs = {}
  callback.on_epoch_end(0, logs)
  _, labels, probabilities = predict.target_probabilities(
      model, source_dir, "train", reader, head=model_lib.SOURCE_HEAD)
  expected = np.mean(np.argmax(probabilities, 1) == len(names) - 1 - labels)
  assert logs["source_validation_accuracy"] == pytest.approx(expected)
  config = train.TrainConfig(
      output_dir=str(tmp_path / "run"), first_round=first_round,
      model=training_fixtures.TINY_MODEL, pairs=training_fixtures.PAIRS, total_steps=2,
      steps_per_epoch=1, source_validation_split="train", verbose=0)
  with pytest.raises(ValueError, match="one the selection draws from"):
    train.train(config)


def test_the_registry_drops_a_width_the_network_does_not_take_and_names_the_known_ones():
  assert model_lib.ModelConfig(base="EfficientNetLite0", alpha=1.0).alpha is None
  assert model_lib.ModelConfig(base="CifarResNet8", alpha=0.5).alpha == 0.5
  assert semantic.FeatureConfig(base="ResNet50V2", alpha=0.25).alpha is None
  assert semantic.FeatureConfig(base="MobileNet", alpha=0.25).alpha == 0.25
  with pytest.raises(errors.InputError, match="unknown network 'ResNet9'; known: .*CifarResNet8"):
    applications.build_application("ResNet9")
  # Every registered network states its scaling and where its weights come from.
  for name, entry in applications.BACKBONES.items():
    applications.preprocess(np.zeros((1, 1, 1, 3)), entry.preprocessing)
    assert entry.weights and entry.input_size >= 32, name
