"""Configuration from the command line: flags made from the config dataclasses, tools'
flags parsed in process, tied settings checked where the config is built, one
definition of the target-only baseline, and the freshness rule."""

import dataclasses

import pytest
from absl import flags

from sjft_tf import files
from sjft_tf.cli import (config_flags, evaluate, make_demo_data, reproduce, runner,
                         train as train_cli)
from sjft_tf.data import ingest, synthetic
from sjft_tf.evaluation import evaluate as evaluate_lib
from sjft_tf.experiments import ablation
from sjft_tf.selection import levels
from sjft_tf.training import model, sampler, train


def test_every_field_is_a_flag_with_its_default_and_its_documented_help():
  values = flags.FlagValues()
  build = config_flags.define(values, train.TrainConfig, prefixes={"l2sp": "l2sp_"},
                              defaults={"model.input_size": 96})
  values(["x", "--output_dir=o", "--learning_rate=0.02", "--l2sp_alpha=0.1",
          "--max_level=6", "--alpha=0.5", "--schedule=step"])
  config = build()
  assert config == train.TrainConfig(
      output_dir="o", model=model.ModelConfig(input_size=96, alpha=0.5),
      optimizer=dataclasses.replace(train.TrainConfig("o").optimizer, learning_rate=0.02,
                                    schedule="step"),
      l2sp=dataclasses.replace(train.TrainConfig("o").l2sp, alpha=0.1),
      level_rule=levels.LevelRule(max_level=6))
  # The crop is the model's input: set from it, and another value is refused.
  assert config.pairs.crop_size == 96
  assert values["learning_rate"].help.startswith("the base learning rate (paper: 0.01)")
  assert "width multiplier" in values["alpha"].help
  fields = {f.name for f in dataclasses.fields(model.ModelConfig)} | {
      f.name for f in dataclasses.fields(sampler.PairConfig)} | {"l2sp_alpha", "l2sp_beta"}
  assert fields <= set(values)
  # Bounds and choices kept with the fields are checked by the flags.
  for bad in ("--batch_size=1", "--total_steps=0", "--strategy=foo", "--schedule=linear"):
    with pytest.raises(flags.IllegalFlagValueError):
      values(["x", "--output_dir=o", bad])
  with pytest.raises(ValueError, match="must be the model's input size"):
    values(["x", "--crop_size=80"])
    build()


def test_docstring_help_reads_shared_and_continued_lines():
  helps = config_flags.field_help(evaluate_lib.EvalConfig)
  assert helps["resize_size"] == helps["crop_size"] == "0 takes the training run's sizes."
  assert helps["views"].startswith('any of "centre" (one centre crop) and "ten_crops"')
  assert helps["views"].endswith("the paper's multi-crop test).")
  # A continuation line that looks like "word: text" continues its entry.
  assert config_flags.field_help(ingest.IngestConfig)["dataset_name"].endswith(
      "(the command line's default: the output folder's name).")
  assert "default" not in config_flags.field_help(ingest.IngestConfig)


def test_a_tools_flag_file_is_parsed_in_process_as_its_command_line(tmp_path):
  flagfile = tmp_path / "eval.flags"
  flagfile.write_text("# a comment\n--run_dir=runs/x\n--spec_dir=data/t\n--split=val\n"
                      "--views=centre\n")
  runner.parse_stage(evaluate, str(flagfile), "--batch_size=8")
  assert evaluate.SPEC_DIR.value == "data/t"
  assert evaluate.config_from_flags() == evaluate_lib.EvalConfig(
      split="val", views=("centre",), batch_size=8)
  runner.parse_stage(evaluate, str(flagfile), "--views=ten_crops", "--views=centre")
  # A repeated flag (absl's multi flag, as before) adds to the file's value.
  assert evaluate.config_from_flags().views == ("centre", "ten_crops", "centre")
  runner.parse_stage(evaluate, str(flagfile))  # a new parse starts from the defaults
  assert evaluate.config_from_flags().batch_size == 64
  with pytest.raises(flags.Error):
    runner.parse_stage(evaluate, str(flagfile), "--no_such_flag=1")
  # Tools keep their flags apart: sjft-train's are not sjft-eval's.
  assert "learning_rate" in train_cli.FLAG_VALUES and "learning_rate" not in evaluate.FLAG_VALUES


def test_the_target_only_baseline_has_one_definition():
  joint = train.TrainConfig(output_dir="runs/a", target_spec_dir="data/t",
                            pairs=sampler.PairConfig(batch_size=64, seed=3),
                            epochs_per_round=2)
  baseline = train.target_only(joint, "runs/a_target_only", equal_target_images=True)
  assert baseline == dataclasses.replace(
      joint, output_dir="runs/a_target_only", epochs_per_round=0,
      pairs=sampler.PairConfig(batch_size=32, seed=3, crop_size=224))
  ablation_config = ablation.AblationConfig(output_dir="runs/r", learned_descriptors="d", gabor_descriptors="",
                                            train=dataclasses.replace(joint, output_dir=""))
  assert ablation.run_configs(ablation_config, "target_only", 3, None,
                              "runs/a_target_only") == [baseline]


def test_the_fingerprint_follows_settings_and_input_bytes_not_times(tmp_path):
  model = tmp_path / "model.keras"
  model.write_bytes(b"weights v1")
  first = files.fingerprint({"split": "test", "views": ["centre"]}, str(model))
  assert first == files.fingerprint({"views": ["centre"], "split": "test"}, str(model))
  model.touch()
  assert files.fingerprint({"split": "test", "views": ["centre"]}, str(model)) == first
  assert files.fingerprint({"split": "val", "views": ["centre"]}, str(model)) != first
  model.write_bytes(b"weights v2")
  assert files.fingerprint({"split": "test", "views": ["centre"]}, str(model)) != first


def test_the_experiment_is_one_config_tree_on_the_command_line(tmp_path):
  """sjft-reproduce's flags are AblationConfig's fields and, nested, sjft-train's."""
  flagfile = tmp_path / "table.flags"
  flagfile.write_text("--output_dir=runs/t\n--target_dir=data/t\n--learned_descriptors=d\n"
                      "--rows=target_only,selective_classes\n--seeds=3,4\n--k0_sweep=10,20\n"
                      "--eval_splits=val,test\n--views=centre\n--views=ten_crops\n"
                      "--learning_rate=0.02\n--l2sp_alpha=0.1\n--base=ResNet50V2\n"
                      "--feature_weights=w.h5\n--budget_images=300\n"
                      "--budget_sweep=300,900\n--budget_sweep_rows=joint_random,selective_deep\n")
  runner.parse_stage(reproduce, str(flagfile))
  config = reproduce._CONFIG()
  template = train.TrainConfig(output_dir="")
  assert config == ablation.AblationConfig(
      output_dir="runs/t", learned_descriptors="d", gabor_descriptors="",
      rows=("target_only", "selective_classes"), seeds=(3, 4), k0_sweep=(10, 20),
      eval_splits=("val", "test"), views=("centre", "ten_crops"), budget_images=300,
      budget_sweep=(300, 900), budget_sweep_rows=("joint_random", "selective_deep"),
      feature_weights="w.h5",
      train=dataclasses.replace(
          template, target_spec_dir="data/t", strategy="one_device", total_steps=480,
          steps_per_epoch=32,
          model=model.ModelConfig(base="ResNet50V2", alpha=0.25, input_size=96,
                                  weights="../shared/weights/mobilenet_v1_0.25_imagenet/"
                                          "mobilenet_2_5_224_tf_no_top.h5"),
          optimizer=dataclasses.replace(template.optimizer, learning_rate=0.02),
          pairs=sampler.PairConfig(batch_size=64, resize_size=110, crop_size=96),
          l2sp=dataclasses.replace(template.l2sp, alpha=0.1)))
  assert config.features.weights == "w.h5" and config.features.base == "ResNet50V2"
  # Checked where the config is built.
  runner.parse_stage(reproduce, str(flagfile), "--rows=target_only,best_row")
  with pytest.raises(ValueError, match="unknown rows \\['best_row'\\]"):
    reproduce._CONFIG()
  runner.parse_stage(reproduce, str(flagfile), "--rows=selective_gabor")
  with pytest.raises(ValueError, match="selective_gabor row needs gabor_descriptors"):
    ablation.row_rounds(reproduce._CONFIG(), seed=0)
  with pytest.raises(flags.IllegalFlagValueError):
    runner.parse_stage(reproduce, str(flagfile), "--views=five_crops")


def test_the_demo_data_flags_are_the_generators_config(tmp_path):
  flagfile = tmp_path / "demo.flags"
  flagfile.write_text("--output_dir=out\n--seed=3\n--target_split_sizes=train=4, test=2\n")
  runner.parse_stage(make_demo_data, str(flagfile))
  assert make_demo_data._CONFIG() == synthetic.SyntheticConfig(
      seed=3, target_split_sizes={"train": 4, "test": 2})
  runner.parse_stage(make_demo_data, str(flagfile), "--target_split_sizes=train=four")
  with pytest.raises(ValueError, match="--target_split_sizes: 'train=four' is not name=count"):
    make_demo_data._CONFIG()
  with pytest.raises(flags.IllegalFlagValueError):
    runner.parse_stage(make_demo_data, str(flagfile), "--image_size=8")
