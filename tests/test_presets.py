"""The experiment presets (flags/reproduce/*.flags) and what the from-scratch ones rely
on: a randomly initialised network, the 64 px path, a source of several splits."""

import glob
import os

import keras
import numpy as np
import pytest

from sjft_tf.cli import reproduce, runner
from sjft_tf.data import ingest, pipeline, sources, synthetic
from sjft_tf.descriptors import extract
from sjft_tf.selection import manifest, search, select
from sjft_tf.training import model as model_lib, sampler as sampler_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRESETS = sorted(glob.glob(os.path.join(REPO, "flags", "reproduce", "*.flags")))


def _config(preset: str):
  cwd = os.getcwd()
  os.chdir(REPO)  # presets' paths are relative to the checkout, as a user runs them
  try:
    runner.parse_stage(reproduce, preset)
    return reproduce._CONFIG()
  finally:
    os.chdir(cwd)


@pytest.mark.parametrize("preset", PRESETS, ids=os.path.basename)
def test_every_preset_builds_its_config(preset):
  config = _config(preset)
  assert config.rows and config.seeds and config.train.total_steps > 0
  assert config.train.pairs.crop_size == config.train.model.input_size


@pytest.mark.parametrize("name", ["oxford_pets_scratch", "flowers102_scratch"])
def test_scratch_presets_train_from_random_weights_at_64_px(name):
  config = _config(os.path.join(REPO, "flags", "reproduce", f"{name}.flags"))
  model = config.train.model
  assert model.weights == "" and model.input_size == 64 and config.train.pairs.crop_size == 64
  # Pretrained weights only describe images for selection (the deep-feature rows).
  assert config.feature_weights.endswith("mobilenet_2_5_224_tf_no_top.h5")
  assert config.learned_descriptors.endswith("descriptors_learned")
  assert config.gabor_descriptors.endswith("descriptors_gabor")
  # Their source is all of Tiny ImageNet, both of its splits described.
  for bank in ("learned", "gabor"):
    target = "oxford_pets" if "pets" in name else "flowers102"
    with open(os.path.join(REPO, "flags", "descriptors", f"{target}_scratch_{bank}.flags")) as f:
      text = f.read()
    assert "--source_dir=data/tiny_imagenet200_all" in text
    assert "--source_splits=train,val" in text and "--crop_size=64" in text


@pytest.mark.parametrize("name", ["flowers102_scratch_resnet", "oxford_pets_scratch_resnet"])
def test_resnet_scratch_presets_hold_the_source_val_split_out(name):
  """The CIFAR ResNet-8 from scratch at 32 px with CIFAR's pad-and-crop; the source is
  Tiny ImageNet's train split, its val split scores the source head and is never
  described (so never selected)."""
  config = _config(os.path.join(REPO, "flags", "reproduce", f"{name}.flags"))
  train = config.train
  assert (train.model.base, train.model.weights, train.model.input_size) == (
      "CifarResNet8", "", 32)
  assert train.pairs.crop_padding == 4 and train.pairs.resize_size == 32
  assert train.pairs.sources_per_target == 3 and train.source_validation_split == "val"
  target = "oxford_pets" if "pets" in name else "flowers102"
  with open(os.path.join(REPO, "flags", "descriptors",
                         f"{target}_scratch_resnet_learned.flags")) as f:
    text = f.read()
  assert "--source_splits=train\n" in text and "--source_dir=data/tiny_imagenet200_all" in text
  # The deep-feature rows select with a pretrained MobileNet 0.25, not the ResNet being
  # trained from random weights.
  features = config.features
  assert (features.base, features.alpha, features.input_size) == ("MobileNet", 0.25, 96)
  assert features.weights.endswith("mobilenet_2_5_224_tf_no_top.h5")
  # The Gabor row: its bank holds the source val split out too.
  assert config.gabor_descriptors == f"runs/{target}_scratch_resnet/descriptors_gabor"
  with open(os.path.join(REPO, "flags", "descriptors",
                         f"{target}_scratch_resnet_gabor.flags")) as f:
    text = f.read()
  assert "--source_splits=train\n" in text and "--bank=gabor" in text
  assert f"--target_dir=data/{target}\n" in text
  assert f"--output_dir={config.gabor_descriptors}\n" in text


def test_random_initialisation_is_random_and_not_the_pretrained_weights(shared_data_dir):
  weights = os.path.join(os.path.dirname(shared_data_dir), "weights",
                         "mobilenet_v1_0.25_imagenet", "mobilenet_2_5_224_tf_no_top.h5")
  if not os.path.exists(weights):
    pytest.skip(f"{weights} is absent")
  config = model_lib.ModelConfig(base="MobileNet", weights="", input_size=64, alpha=0.25)
  kernels = []
  for seed in (0, 1):
    keras.utils.set_random_seed(seed)
    base = model_lib.build_joint_model(config, 37).get_layer("mobilenet_0.25_64")
    kernels.append(np.array(base.get_layer("conv1").kernel))
  pretrained = model_lib.build_joint_model(
      model_lib.ModelConfig(base="MobileNet", weights=weights, input_size=64, alpha=0.25),
      37).get_layer("mobilenet_0.25_64").get_layer("conv1").kernel
  assert not np.allclose(kernels[0], kernels[1])
  assert all(not np.allclose(k, np.array(pretrained), atol=1e-3) for k in kernels)
  # Glorot-uniform's scale, not the pretrained filters' (which are far larger).
  assert np.std(kernels[0]) < 0.5 * np.std(np.array(pretrained))


def test_a_source_of_two_splits_is_described_selected_and_sampled(tmp_path):
  """The from-scratch source is Tiny ImageNet's train and val splits together."""
  synthetic.generate(str(tmp_path / "images"), synthetic.SyntheticConfig(
      image_size=48, source_images_per_class=4, num_target_classes=2,
      target_split_sizes={"train": 3}))
  target = ingest.ingest(sources.list_folder(str(tmp_path / "images" / "target")),
                         ingest.IngestConfig(output_dir=str(tmp_path / "target"),
                                             dataset_name="t", show_progress=False))
  source_listing = sources.list_folder(str(tmp_path / "images" / "source"), layout="class",
                                       split_fractions="train=0.75,val=0.25")
  source = ingest.ingest(source_listing, ingest.IngestConfig(
      output_dir=str(tmp_path / "source"), dataset_name="s", show_progress=False))
  assert set(source.splits) == {"train", "val"}
  metadata = extract.extract(extract.ExtractionConfig(
      output_dir=str(tmp_path / "d"), bank=extract.BankConfig(kind="gabor"), resize_size=48,
      crop_size=48, show_progress=False), target.directory, source.directory,
      source_splits=("train", "val"))
  described = {(e["role"], e["split"]): e["num_examples"] for e in metadata["datasets"]}
  assert described[("source", "train")] + described[("source", "val")] == sum(
      s.num_examples for s in source.splits.values())
  _, folder = select.initial_selection(
      str(tmp_path / "d"), str(tmp_path / "sel"),
      manifest.SelectionParams(k0=4, max_neighbours=30, min_images_per_class=1),
      search.SearchConfig(method="exact"), write_subset=False)
  selection = manifest.load(folder)
  assert selection.provenance.source.splits == ("train", "val")
  assert len(set(selection.source_ids.tolist())) == len(selection.source_ids) == sum(
      s.num_examples for s in source.splits.values())
  pairs = sampler_lib.PairSampler(folder, sampler_lib.PairConfig(
      batch_size=4, resize_size=48, crop_size=48))
  _, drawn = pairs.pair_ids(0, 400)
  val_ids = {ex["id"].decode() for ex in
             pipeline.read_examples(source, "val").as_numpy_iterator()}
  assert set(drawn.tolist()) & val_ids and set(drawn.tolist()) - val_ids  # both splits
  images, _ = next(iter(pairs.dataset()))
  assert images.shape == (4, 48, 48, 3)
