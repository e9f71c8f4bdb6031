"""What every stage does with damaged files it reads or reuses, bad numbers, killed
writers' leftovers, and an installed package run from anywhere (issue 23)."""

import dataclasses
import glob
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from sjft_tf import files, outputs
from sjft_tf.cli import runner
from sjft_tf.data import ingest, sources, synthetic
from sjft_tf.data import spec as spec_lib
from sjft_tf.descriptors import extract, store
from sjft_tf.evaluation import evaluate
from sjft_tf.export import serving
from sjft_tf.selection import manifest, report, search, select
from sjft_tf.training import optimization, train as train_lib
from sjft_tf.training import model as model_lib, sampler as sampler_lib
import training_fixtures as fx

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)


def _cli(args, cwd=REPO, env=None, timeout=300):
  return subprocess.run(args, cwd=cwd, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
                                                **(env or {})),
                        capture_output=True, text=True, timeout=timeout)


def _one_line_error(done, *names):
  """Exit 2 and one stderr line that names each of `names`."""
  lines = [l for l in done.stderr.splitlines() if re.match(r"^sjft-[\w-]+: error: ", l)]
  assert done.returncode == 2 and len(lines) == 1, done.stderr[-2000:]
  assert all(n in lines[0] for n in names), lines[0]


def test_numeric_flags_out_of_bounds_are_refused_by_cli_and_python(tmp_path):
  images = tmp_path / "in" / "train" / "a"
  os.makedirs(images)
  from PIL import Image  # pylint: disable=g-import-not-at-top
  Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(images / "x.png")
  ingest_cli = [os.path.join(BIN, "sjft-ingest"), f"--input_root={tmp_path / 'in'}",
                f"--output_dir={tmp_path / 'out'}", "--noprogress"]
  _one_line_error(_cli(ingest_cli + ["--max_side=-1"]), "--max_side=-1")
  _one_line_error(_cli(ingest_cli + ["--layout=class", "--split_fractions=train=-0.2,val=1.2"]),
                  "train=-0.2", "[0, 1]")
  _one_line_error(_cli(ingest_cli + ["--layout=class", "--split_counts=train=-3,test=rest"]),
                  "train=-3", "0 or more")
  assert not (tmp_path / "out").exists()
  # The same bounds refuse the same values from Python.
  with pytest.raises(ValueError, match="IngestConfig.max_side = -1: must be at least 0"):
    ingest.IngestConfig(output_dir="o", dataset_name="d", max_side=-1)
  with pytest.raises(ValueError, match="OptimizerConfig.momentum = 1.5: must be at most 1"):
    optimization.OptimizerConfig(momentum=1.5)
  with pytest.raises(ValueError, match="PairConfig.min_crop_area = 2"):
    sampler_lib.PairConfig(min_crop_area=2)
  with pytest.raises(ValueError, match="ModelConfig.dtype_policy = 'fp8'"):
    model_lib.ModelConfig(dtype_policy="fp8")
  with pytest.raises(ValueError, match="ExtractionConfig.crop_size = 0"):
    extract.ExtractionConfig(output_dir="o", crop_size=0)
  with pytest.raises(ValueError, match="SearchConfig.num_neighbours = 0"):
    search.SearchConfig(num_neighbours=0)
  with pytest.raises(ValueError, match="a fraction must lie in"):
    sources.parse_split_fractions("train=-0.2,val=1.2")


def test_dead_writers_temporaries_are_swept_in_every_subfolder(tmp_path):
  dead = 2**22 + 12345  # above the kernel's pid_max here: no such process
  for relative in ("x.json.tmp-{}", "source/a.npz.tmp-{}.npz", "deep/er/b.tmp.{}"):
    path = tmp_path / relative.format(dead)
    os.makedirs(path.parent, exist_ok=True)
    path.write_text("half")
  alive = tmp_path / "source" / f"c.npz.tmp-{os.getppid()}.npz"  # a running writer's
  alive.write_text("busy")
  removed = files.remove_stale_temporaries(str(tmp_path))
  assert len(removed) == 3 and alive.exists()


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
  """Every stage of a tiny pipeline run once: {name: path} of its folders."""
  root = tmp_path_factory.mktemp("robust")
  synthetic.generate(str(root / "images"), synthetic.SyntheticConfig(
      image_size=32, source_images_per_class=5, num_target_classes=3,
      target_split_sizes={"train": 4, "test": 3}))
  paths = {"target": str(root / "target"), "source": str(root / "source"),
           "descriptors": str(root / "descriptors"), "selection": str(root / "selection"),
           "run": str(root / "run"), "export": str(root / "export")}
  for role in ("target", "source"):
    ingest.ingest(sources.list_folder(str(root / "images" / role)), ingest.IngestConfig(
        output_dir=paths[role], dataset_name=role, shard_size=20, show_progress=False))
  _stages(paths)
  return paths


def _descriptors(paths):
  return extract.extract(extract.ExtractionConfig(
      output_dir=paths["descriptors"], bank=extract.BankConfig(kind="gabor"),
      resize_size=48, crop_size=48, show_progress=False), paths["target"], paths["source"])


def _selection(paths):
  return select.initial_selection(paths["descriptors"], paths["selection"],
                                  manifest.SelectionParams(k0=3, max_neighbours=20,
                                                           min_images_per_class=1),
                                  search.SearchConfig(method="exact"), write_subset=False)[1]


def _train(paths):
  return train_lib.train(train_lib.TrainConfig(
      output_dir=paths["run"], first_round=os.path.join(paths["selection"], "round_000"),
      model=fx.TINY_MODEL, pairs=fx.PAIRS, total_steps=4, steps_per_epoch=2,
      strategy="one_device", verbose=0))


def _evaluate(paths):
  return evaluate.evaluate(paths["run"], paths["target"], evaluate.EvalConfig(
      split="test", views=("centre",)))


def _export(paths):
  """As sjft-run exports: the current version reused when whole, else (re)written."""
  return serving.current_export(serving.ExportConfig(run_dir=paths["run"],
                                                     export_dir=paths["export"]))[0]


STAGES = {"descriptors": _descriptors, "selection": _selection, "training": _train,
          "evaluation": _evaluate, "export": _export}


def _stages(paths):
  for stage in STAGES.values():
    stage(paths)


def _outputs(paths, stage: str):
  """What a stage made: descriptor and selection bytes, the run's test accuracy, the
  exported version's files."""
  if stage in ("descriptors", "selection"):
    found = {}
    for path in sorted(glob.glob(os.path.join(paths[stage], "**", "*.npz"), recursive=True)):
      with open(path, "rb") as f:
        found[os.path.relpath(path, paths[stage])] = f.read()
    return found
  if stage == "export":  # the files of the version served (the highest)
    version = os.path.join(paths["export"], str(serving.next_version(paths["export"]) - 1))
    return sorted(os.path.relpath(p, version) for p in glob.glob(
        os.path.join(version, "**"), recursive=True))
  return round(_evaluate(paths)["views"]["centre"]["top1"], 4)


def _reads(paths) -> dict:
  """Per stage, files it reads (inputs, and its own outputs a rerun reuses)."""
  def one(folder, pattern):
    return sorted(glob.glob(os.path.join(paths[folder], pattern)))[:1]
  run = [os.path.join(paths["run"], n) for n in ("model.keras", "train_report.json",
                                                 "train_config.json")]
  round_files = [os.path.join(paths["selection"], "round_000", n)
                 for n in (manifest.JSON_FILENAME, manifest.ARRAYS_FILENAME)]
  timing = [os.path.join(paths["selection"], "round_000", manifest.TIMING_FILENAME)]
  return {
      # First: the served version's files are named now, before a remade model of a
      # later case exports a newer one.
      "export": run[:1] + [os.path.join(paths["export"], str(serving.next_version(
          paths["export"]) - 1), n) for n in (
              "saved_model.pb", os.path.join("variables", "variables.index"))],
      "descriptors": one("target", "dataset_spec.json") + one("target", "train-*.json")
                     + one("source", "train-*.tfrecord") + one("descriptors", "edges.npz")
                     + one("descriptors", "source/*.npz")
                     + one("descriptors", "descriptor_metadata.json"),
      "selection": one("descriptors", "target/*.npz") + round_files + timing,
      "training": round_files + run,
      "evaluation": one("target", "test-*.tfrecord") + run[:2]
                    + one("run", "evaluation_test.json"),
  }


def _damaged_outcome(pipeline, stage: str, path: str, damaged: bytes, following=()) -> str:
  """Writes `damaged` over `path`, runs the stage (and `following` stages, which read
  what it kept): "remade", "not needed" (the damaged bytes are still there, unread) or
  "refused" (one line naming the file). Restores the file and reruns the stage and the
  following ones."""
  with open(path, "rb") as f:
    original = f.read()
  with open(path, "wb") as f:
    f.write(damaged)
  try:
    for name in (stage, *following):
      STAGES[name](pipeline)
    with open(path, "rb") as f:
      outcome = "not needed" if f.read() == damaged else "remade"
  except runner.USER_ERRORS as error:
    message = str(error).strip()
    assert os.path.basename(path) in message and "\n" not in message, (stage, path, message)
    outcome = "refused"
  if outcome != "remade":
    with open(path, "wb") as f:
      f.write(original)
  for name in (stage, *following):
    STAGES[name](pipeline)
  return outcome


def test_each_file_a_stage_reads_truncated_in_turn(pipeline):
  """Truncated: the stage remakes it (giving what an undamaged run gives), does not
  need it (its outputs are whole), or stops with one line naming it; restored, the
  stage gives what an undamaged run gives."""
  undamaged = {stage: _outputs(pipeline, stage) for stage in STAGES}
  outcomes = {}
  for stage, paths in _reads(pipeline).items():
    for path in paths:
      with open(path, "rb") as f:
        original = f.read()
      key = (stage, os.path.basename(path))
      outcomes[key] = _damaged_outcome(pipeline, stage, path, original[:len(original) // 2])
      assert _outputs(pipeline, stage) == undamaged[stage], key
  assert outcomes == {
      ("descriptors", "dataset_spec.json"): "refused",
      ("descriptors", os.path.basename(_reads(pipeline)["descriptors"][1])): "refused",
      ("descriptors", os.path.basename(_reads(pipeline)["descriptors"][2])): "not needed",
      ("descriptors", "edges.npz"): "remade",
      ("descriptors", os.path.basename(_reads(pipeline)["descriptors"][4])): "remade",
      ("descriptors", "descriptor_metadata.json"): "remade",  # was refused, advice looped
      ("selection", os.path.basename(_reads(pipeline)["selection"][0])): "not needed",
      ("selection", "selection.json"): "remade", ("selection", "selection.npz"): "remade",
      ("selection", "timing.json"): "remade",
      ("training", "selection.json"): "refused", ("training", "selection.npz"): "refused",
      ("training", "model.keras"): "remade", ("training", "train_report.json"): "remade",
      ("training", "train_config.json"): "refused",
      # The evaluation of the same images (by their ingest records) is reused.
      ("evaluation", os.path.basename(_reads(pipeline)["evaluation"][0])): "not needed",
      ("evaluation", "model.keras"): "refused", ("evaluation", "train_report.json"): "refused",
      ("evaluation", "evaluation_test.json"): "remade",
      ("export", "model.keras"): "refused", ("export", "saved_model.pb"): "remade",
      ("export", "variables.index"): "remade"}, outcomes


def _two_shard_target(tmp_path):
  """(listing, ingest config, spec) of a small target ingested into 2 train shards."""
  synthetic.generate(str(tmp_path / "images"), synthetic.SyntheticConfig(
      image_size=32, source_images_per_class=2, num_target_classes=2,
      target_split_sizes={"train": 3}))
  config = ingest.IngestConfig(output_dir=str(tmp_path / "t"), dataset_name="t",
                               shard_size=4, show_progress=False)
  listed = sources.list_folder(str(tmp_path / "images" / "target"))
  ingest.ingest(listed, config)
  return listed, config, spec_lib.load_spec(config.output_dir)


def test_a_truncated_shard_is_remade_by_ingest_and_named_by_readers(tmp_path):
  listed, config, spec = _two_shard_target(tmp_path)
  shard = spec.shard_paths("train")[0]
  with open(shard, "rb") as f:
    original = f.read()
  with open(shard, "wb") as f:
    f.write(original[:100])
  from sjft_tf.data import pipeline as pipeline_lib  # pylint: disable=g-import-not-at-top
  with pytest.raises(ValueError, match=r"train-00000-of-00002.tfrecord is damaged \(100 "):
    pipeline_lib.read_examples(config.output_dir, "train")
  # Only the readers of the damaged shard fail (a Beam worker reads one shard).
  assert spec.checked_shard_paths("train", [1]) == spec.shard_paths("train")[1:]
  with pytest.raises(ValueError, match="train-00000-of-00002.tfrecord is damaged"):
    spec.checked_shard_paths("train", [0])
  ingest.ingest(listed, config)
  with open(shard, "rb") as f:
    assert f.read() == original


def test_train_reads_its_round_before_writing_its_record(pipeline, tmp_path):
  """A damaged first round is named before train_config.json exists, so the retry
  after the repair is not refused as "trained on other inputs"."""
  copy = os.path.join(pipeline["selection"], "round_000")
  arrays = os.path.join(copy, manifest.ARRAYS_FILENAME)
  with open(arrays, "rb") as f:
    original = f.read()
  with open(arrays, "wb") as f:
    f.write(original[:1000])
  config = train_lib.TrainConfig(output_dir=str(tmp_path / "run"), first_round=copy,
                                 model=fx.TINY_MODEL, pairs=fx.PAIRS, total_steps=2,
                                 steps_per_epoch=2, strategy="one_device", verbose=0)
  with pytest.raises(ValueError, match="selection.npz is damaged"):
    train_lib.train(config)
  assert not (tmp_path / "run" / "train_config.json").exists()
  with open(arrays, "wb") as f:
    f.write(original)
  assert train_lib.train(config)["epochs_trained_this_call"] == 1


def test_cli_eval_keeps_views_says_reused_and_names_a_damaged_model(pipeline, tmp_path):
  run = str(tmp_path / "run")
  shutil.copytree(pipeline["run"], run)
  eval_cli = [os.path.join(BIN, "sjft-eval"), f"--run_dir={run}",
              f"--spec_dir={pipeline['target']}", "--split=test"]
  first = _cli(eval_cli + ["--views=centre", "--views=ten_crops"])
  assert first.returncode == 0 and "wrote " in first.stdout, first.stderr[-2000:]
  again = _cli(eval_cli + ["--views=centre"])
  assert "reused " in again.stdout and "wrote " not in again.stdout
  remade = _cli(eval_cli + ["--noreuse", "--views=centre"])
  assert "wrote " in remade.stdout
  with open(os.path.join(run, "evaluation_test.json")) as f:
    assert sorted(json.load(f)["views"]) == ["centre", "ten_crops"]  # kept, not dropped
  model = os.path.join(run, "model.keras")
  with open(model, "rb") as f:
    data = f.read()
  with open(model, "wb") as f:
    f.write(data[:len(data) // 2])
  _one_line_error(_cli(eval_cli + ["--noreuse"]), "model.keras is damaged", "sjft-train")
  _one_line_error(_cli([os.path.join(BIN, "sjft-export"), f"--run_dir={run}",
                        f"--export_dir={tmp_path / 'x'}"]), "model.keras is damaged")


def test_run_logs_name_the_target_head_alike_and_class_report_ranks(pipeline, tmp_path):
  target_only = train_lib.train(train_lib.TrainConfig(
      output_dir=str(tmp_path / "alone"), target_spec_dir=pipeline["target"],
      model=fx.TINY_MODEL, pairs=fx.PAIRS, total_steps=2, steps_per_epoch=2,
      strategy="one_device", verbose=0))
  joint = outputs.TrainedRun.read(pipeline["run"]).report
  for logs in (target_only["final_epoch_logs"], joint["final_epoch_logs"]):
    assert {"loss", "target_loss", "target_accuracy"} <= set(logs)
  header = (tmp_path / "alone" / "history.csv").read_text().splitlines()[0].split(",")
  assert "target_accuracy" in header and "accuracy" not in header
  selection = manifest.load(os.path.join(pipeline["selection"], "round_000"))
  names = [f"c{i}" for i in range(len(selection.source_class_names))]
  overall = report.class_report(selection, ["a", "b", "c"], names)["overall"]["top"]
  counts = np.bincount(selection.source_labels[selection.selected],
                       minlength=len(names))
  assert len(overall) == np.count_nonzero(counts)  # every selected class, not 5
  keys = [(-t["images"], -t["lift"], t["name"]) for t in overall]
  assert keys == sorted(keys)


def test_unpack_and_presets_meet_outside_the_checkout(tmp_path, shared_data_dir):
  """A non-editable install run from another folder: --unpack extracts under that
  folder's .cache/shared, where the preset's ingest flags read."""
  archive = os.path.join(shared_data_dir, "oxford_pets", "oxford_pets_96px.tar.gz")
  if not os.path.exists(archive):
    pytest.skip(f"{archive} is absent")
  site, work = tmp_path / "site", tmp_path / "work"
  built = _cli([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                "--quiet", "--target", str(site), REPO], timeout=600)
  assert built.returncode == 0, built.stderr[-2000:]
  os.makedirs(work)
  done = _cli([sys.executable, "-m", "sjft_tf.cli.reproduce",
               "--unpack=oxford_pets/oxford_pets_96px.tar.gz",
               f"--prepare_flagfiles=sjft-ingest={REPO}/flags/ingest/oxford_pets.flags",
               "--prepare_only"], cwd=str(work), timeout=600,
              env={"PYTHONPATH": str(site),
                   "SJFT_SHARED_DIR": os.path.dirname(shared_data_dir)})
  assert done.returncode == 0, done.stderr[-3000:]
  assert os.path.isdir(work / ".cache" / "shared" / "oxford_pets" / "train")
  spec = spec_lib.load_spec(str(work / "data" / "oxford_pets"))
  assert spec.splits["train"].num_examples == 370
  assert str(site) in done.stdout  # the installed copy ran, not the checkout


def test_a_shard_overwritten_with_garbage_of_its_size_is_remade_and_named(tmp_path):
  """Same size, other bytes: ingest's reuse check (SHA-1 of its record) remakes it;
  a reader that meets it (the record CRCs fail) names it in one line."""
  listed, config, spec = _two_shard_target(tmp_path)
  shard = spec.shard_paths("train")[1]
  with open(shard, "rb") as f:
    original = f.read()
  with open(shard, "wb") as f:
    f.write(np.random.default_rng(0).bytes(len(original)))
  assert spec.damaged_shards("train") == [shard]
  from sjft_tf.data import pipeline as pipeline_lib  # pylint: disable=g-import-not-at-top
  with pytest.raises(ValueError) as raised:
    pipeline_lib.load_encoded(config.output_dir, ["train"])
  message = str(raised.value)
  assert message.startswith(f"{shard} is damaged") and "rerun sjft-ingest" in message
  assert "\n" not in message
  descriptors = extract.ExtractionConfig(
      output_dir=str(tmp_path / "d"), bank=extract.BankConfig(kind="gabor"),
      resize_size=48, crop_size=48, show_progress=False)
  with pytest.raises(ValueError, match="train-00001-of-00002.tfrecord is damaged"):
    extract.extract(descriptors, config.output_dir)
  ingest.ingest(listed, config)
  with open(shard, "rb") as f:
    assert f.read() == original
  assert spec.damaged_shards("train") == []


@pytest.mark.parametrize("damage", ["empty", "garbage"])
def test_each_file_a_stage_reads_emptied_or_overwritten(pipeline, damage, capsys):
  """Emptied, or overwritten with garbage of its size: the stage and the next one
  remake it, do not need it, or stop with one line naming it; restored, the stage
  gives what an undamaged run gives. The tally is printed."""
  order = list(STAGES)
  undamaged = {stage: _outputs(pipeline, stage) for stage in STAGES}
  outcomes = {}
  for stage, paths in _reads(pipeline).items():
    for path in paths:
      with open(path, "rb") as f:
        original = f.read()
      damaged = b"" if damage == "empty" else np.random.default_rng(0).bytes(len(original))
      key = (stage, os.path.relpath(path, os.path.dirname(pipeline["run"])))
      outcomes[key] = _damaged_outcome(pipeline, stage, path, damaged,
                                       order[order.index(stage) + 1:order.index(stage) + 2])
      assert _outputs(pipeline, stage) == undamaged[stage], key
  tally = {kind: sum(v == kind for v in outcomes.values())
           for kind in ("remade", "refused", "not needed")}
  with capsys.disabled():
    print(f"\n{damage}: {len(outcomes)} files: {tally}")
    for key, outcome in sorted(outcomes.items()):
      print(f"  {outcome:10s} {key[0]}: {key[1]}")
  assert tally["remade"] + tally["refused"] >= len(outcomes) // 2, outcomes


def test_a_stage_flag_file_that_cannot_be_opened_is_one_line(tmp_path):
  """sjft-reproduce in a folder without flags/: exit 2, one line naming the file."""
  os.makedirs(tmp_path / "shared" / "data")
  done = _cli([os.path.join(BIN, "sjft-reproduce"), "--unpack=", "--prepare_only",
               "--prepare_flagfiles=sjft-ingest=flags/ingest/flowers102.flags"],
              cwd=tmp_path, env={"SJFT_SHARED_DIR": str(tmp_path / "shared")})
  _one_line_error(done, "flags/ingest/flowers102.flags")


def test_a_damaged_per_class_figure_is_made_again_not_reused(pipeline):
  json_path, png_path = evaluate.result_paths(pipeline["run"], "test")
  config = evaluate.EvalConfig(split="test", views=("centre",))
  assert evaluate.stored_evaluation(pipeline["run"], pipeline["target"], config) is not None
  with open(png_path, "r+b") as f:
    f.truncate(os.path.getsize(png_path) // 2)
  assert evaluate.stored_evaluation(pipeline["run"], pipeline["target"], config) is None
  _evaluate(pipeline)
  assert evaluate.stored_evaluation(pipeline["run"], pipeline["target"], config) is not None


def _random_deep_features(pipeline, monkeypatch, seed: int) -> None:
  """The deep-feature rows' pooled features replaced by random unit vectors of the
  pipeline's targets and sources (no network)."""
  from sjft_tf.selection import semantic  # pylint: disable=g-import-not-at-top
  base = manifest.load(os.path.join(pipeline["selection"], "round_000"))
  rng = np.random.default_rng(seed)
  unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)
  features = (unit(rng.normal(size=(len(base.target_ids), 8))),
              unit(rng.normal(size=(len(base.source_ids), 8))))
  monkeypatch.setattr(semantic, "base_features", lambda *args: features)


def test_adding_a_selective_row_leaves_the_other_rows_inputs_as_they_are(
    pipeline, tmp_path, monkeypatch):
  """joint_all, joint_random and the deep-feature rows are made over the ranked round at
  --k0 whichever rows a study holds: adding selective_learned (at a budget, another K0)
  changes none of them (a deep round made over the budget's round was remade, with
  other pools, when a rerun named other rows)."""
  from sjft_tf.experiments import ablation  # pylint: disable=g-import-not-at-top
  _random_deep_features(pipeline, monkeypatch, seed=4)

  def firsts(rows):
    config = ablation.AblationConfig(
        output_dir=str(tmp_path), learned_descriptors=pipeline["descriptors"],
        gabor_descriptors="", rows=rows, k0=10, max_neighbours=20, min_images_per_class=1,
        budget_images=6, train=train_lib.TrainConfig(output_dir="", model=fx.TINY_MODEL,
                                                     pairs=fx.PAIRS))
    return ablation.row_rounds(config, seed=0)
  others = ("target_only", "joint_all", "joint_random", "selective_deep", "selective_classes")
  made = lambda folder: os.stat(os.path.join(folder, manifest.ARRAYS_FILENAME)).st_mtime_ns
  before = firsts(others)
  stamps = {row: made(folder) for row, folder in before.items() if folder}
  after = firsts(others + ("selective_learned",))
  assert os.path.basename(os.path.dirname(after["selective_learned"])) != "learned_ranked"
  for row in ("joint_all", "joint_random", "selective_deep", "selective_classes"):
    assert before[row] == after[row]
    assert manifest.fingerprint(before[row]) == manifest.fingerprint(after[row])
    assert made(after[row]) == stamps[row], f"{row}'s round was made again"


def test_a_budget_sweep_trains_each_row_at_each_budget_and_reuses_the_tables_runs(
    pipeline, tmp_path, monkeypatch):
  """--budget_sweep: every row of budget_sweep_rows at every budget and seed, its own
  selection of that size; at the table's budget the table's runs are the sweep's; a
  rerun with complete_runs_only reads the same numbers and trains nothing."""
  from sjft_tf.experiments import ablation, reproduce  # pylint: disable=g-import-not-at-top
  _random_deep_features(pipeline, monkeypatch, seed=5)
  config = ablation.AblationConfig(
      output_dir=str(tmp_path), learned_descriptors=pipeline["descriptors"],
      gabor_descriptors="", rows=("joint_random",), seeds=(0, 1), eval_splits=("test",),
      k0=10, max_neighbours=20, min_images_per_class=1, budget_images=6,
      budget_sweep=(12, 6), budget_sweep_rows=("joint_random", "selective_classes"),
      train=train_lib.TrainConfig(output_dir="", target_spec_dir=pipeline["target"],
                                  model=fx.TINY_MODEL, pairs=fx.PAIRS, total_steps=2,
                                  steps_per_epoch=1, strategy="one_device", verbose=0))
  results = reproduce.run(config)
  points = {(p["budget"], p["row"]): p for p in results["budget_sweep"]}
  assert list(points) == [(6, "joint_random"), (6, "selective_classes"),  # by budget
                          (12, "joint_random"), (12, "selective_classes")]
  assert all(len(p["runs"]) == 2 and len(p["test/centre/top1"]["values"]) == 2
             for p in points.values())
  assert points[6, "joint_random"]["selected_images"] == 6
  assert points[12, "joint_random"]["selected_images"] == 12
  # Whole classes until the budget is reached.
  assert 12 <= points[12, "selective_classes"]["selected_images"] < 12 + 5
  table_runs = [r["run_dir"] for r in results["rows"]["joint_random"]["runs"]]
  assert [r["run_dir"] for r in points[6, "joint_random"]["runs"]] == table_runs
  assert points[12, "joint_random"]["runs"][1]["run_dir"] == str(
      tmp_path / "runs" / "joint_random_b12" / "seed1")
  assert points[6, "joint_random"]["test/centre/top1"] == (
      results["rows"]["joint_random"]["test/centre/top1"])
  with open(tmp_path / "results.md") as f:
    table = f.read()
  assert "| budget (source images) | row |" in table and "| 12 | selective, deep class" in table
  assert os.path.getsize(tmp_path / "figures" / "budget_sweep.png") > 0
  first = points[12, "selective_classes"]["runs"][0]["first_round"]  # its class report
  assert os.path.exists(os.path.join(first, report.JSON_FILENAME))
  model = lambda point: os.path.join(point["runs"][0]["run_dir"], outputs.MODEL_FILENAME)
  stamps = {key: os.stat(model(p)).st_mtime_ns for key, p in points.items()}
  again = reproduce.run(dataclasses.replace(config, complete_runs_only=True))
  assert [(p["budget"], p["row"], p["test/centre/top1"]) for p in again["budget_sweep"]] == [
      (p["budget"], p["row"], p["test/centre/top1"]) for p in results["budget_sweep"]]
  assert all(os.stat(model(p)).st_mtime_ns == stamps[key] for key, p in points.items())
  with pytest.raises(ValueError, match=r"budget_sweep_rows \['joint_all'\]"):
    dataclasses.replace(config, budget_sweep_rows=("joint_all",))


def test_a_damaged_timing_is_named_where_read_and_remade_by_selection(pipeline, caplog):
  folder = os.path.join(pipeline["selection"], "round_000")
  timing = os.path.join(folder, manifest.TIMING_FILENAME)
  with open(timing, "rb") as f:
    original = f.read()
  try:
    with open(timing, "w") as f:
      f.write('{"search_seconds": "x"}')
    with pytest.raises(ValueError, match="timing.json is damaged"):
      manifest.search_seconds(folder)
    with caplog.at_level("WARNING"):
      assert manifest.load(folder).provenance.search_seconds is None
    assert timing in caplog.text
    _selection(pipeline)  # searched again: a whole timing.json, the same round
    assert isinstance(manifest.search_seconds(folder), float)
  finally:
    with open(timing, "wb") as f:
      f.write(original)


def test_a_replaced_model_is_named_never_overwritten_and_an_older_report_trusts_a_whole_one(
    pipeline, tmp_path):
  """model.keras replaced by another whole Keras archive (a user's copy, an older
  model): training and evaluation refuse it by name, saying "replaced", and nothing
  overwrites it. A run of an earlier version (no fingerprint in its report) with a
  whole archive is loaded; cut, it is damaged."""
  import keras  # pylint: disable=g-import-not-at-top
  run = outputs.TrainedRun.read(pipeline["run"])
  original = run.model_path + ".orig"
  shutil.copyfile(run.model_path, original)
  try:
    keras.saving.load_model(run.model_path).save(run.model_path)  # whole, other bytes
    replaced = open(run.model_path, "rb").read()
    assert outputs.TrainedRun.read(pipeline["run"]).model_problem() == outputs.MODEL_REPLACED
    for stage in (_train, lambda p: evaluate.evaluate(p["run"], p["target"], evaluate.EvalConfig(
        split="test", views=("centre",), reuse=False))):
      with pytest.raises(ValueError, match="replaced") as error:
        stage(pipeline)
      assert run.model_path in str(error.value) and "\n" not in str(error.value)
      assert open(run.model_path, "rb").read() == replaced  # kept: the user's file
    older = dataclasses.replace(run, report={
        k: v for k, v in run.report.items() if k != "model_fingerprint"})
    assert older.model_problem() is None and older.load_model() is not None
    with open(run.model_path, "r+b") as f:
      f.truncate(len(replaced) // 2)
    assert older.model_problem() == outputs.MODEL_DAMAGED
  finally:
    os.replace(original, run.model_path)
  assert outputs.TrainedRun.read(pipeline["run"]).model_problem() is None


def test_an_extracted_file_removed_or_truncated_is_extracted_again(tmp_path, caplog):
  """The stamp of an extraction lists what it extracted: a rerun restores a truncated
  or removed file (naming it) instead of trusting the stamp; an untouched cache is
  reused as it is, and a stamp of an earlier version (the archive's path) is trusted."""
  import tarfile  # pylint: disable=g-import-not-at-top
  from sjft_tf.data import archives  # pylint: disable=g-import-not-at-top
  (tmp_path / "d" / "a").mkdir(parents=True)
  contents = {"d/a/one.jpg": b"x" * 1000, "d/two.txt": b"y" * 10}
  for name, data in contents.items():
    (tmp_path / name).write_bytes(data)
  archive = str(tmp_path / "d.tar.gz")
  with tarfile.open(archive, "w:gz") as tar:
    tar.add(tmp_path / "d", arcname="d")
  cache = tmp_path / "cache"
  archives.extract(archive, str(cache))
  assert all((cache / n).read_bytes() == data for n, data in contents.items())
  (stamp,) = [p for p in cache.iterdir() if p.name.startswith(".extracted-")]
  made = (cache / "d/two.txt").stat().st_mtime_ns
  with open(cache / "d/a/one.jpg", "r+b") as f:
    f.truncate(500)
  archives.extract(archive, str(cache))
  assert f"{cache / 'd/a/one.jpg'} is missing or not its extracted size" in caplog.text
  assert (cache / "d/a/one.jpg").read_bytes() == contents["d/a/one.jpg"]
  (cache / "d/two.txt").unlink()
  archives.extract(archive, str(cache))
  assert (cache / "d/two.txt").read_bytes() == contents["d/two.txt"]
  made = (cache / "d/two.txt").stat().st_mtime_ns
  archives.extract(archive, str(cache))  # whole: nothing extracted
  assert (cache / "d/two.txt").stat().st_mtime_ns == made
  stamp.write_text(archive + "\n")  # an earlier version's stamp
  (cache / "d/two.txt").unlink()
  archives.extract(archive, str(cache))
  assert not (cache / "d/two.txt").exists()
