"""Descriptors and selection as Beam pipelines on the DirectRunner with 2 worker
processes, against the local path: edges equal, descriptor files equal, exact
neighbours equal; a corrupt shard is reported, not fatal; a rerun resumes."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from sjft_tf import files
from sjft_tf.data import ingest, sources, synthetic
from sjft_tf.data import spec as spec_lib
from sjft_tf.descriptors import extract, store
from sjft_tf.selection import manifest, search, select

pytest.importorskip("apache_beam")
from sjft_tf.beam import descriptors as beam_descriptors  # noqa: E402

TWO_WORKERS = ["--runner=DirectRunner", "--direct_num_workers=2",
               "--direct_running_mode=multi_processing"]
BIN = os.path.dirname(sys.executable)


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
  """(target_dir, source_dir): the demo problem at 64 px; the target's training split
  in 3 shards and the source in 4, so every pass combines several partitions."""
  root = tmp_path_factory.mktemp("beam")
  synthetic.generate(str(root / "images"), synthetic.SyntheticConfig(
      source_images_per_class=3, num_target_classes=3,
      target_split_sizes={"train": 4, "test": 2}))
  for role, shard_size in (("target", 5), ("source", 20)):
    ingest.ingest(sources.list_folder(str(root / "images" / role)), ingest.IngestConfig(
        output_dir=str(root / role), dataset_name=f"demo_{role}", shard_size=shard_size,
        show_progress=False))
  return str(root / "target"), str(root / "source")


def _config(out):
  return extract.ExtractionConfig(output_dir=str(out), bank=extract.BankConfig(kind="gabor"),
                                  resize_size=64, crop_size=64, batch_size=16,
                                  lookup_cells=1024, show_progress=False)


@pytest.fixture(scope="module")
def both(datasets, tmp_path_factory):
  """(local descriptor folder, Beam descriptor folder) of the same settings."""
  target_dir, source_dir = datasets
  root = tmp_path_factory.mktemp("descriptors")
  local, beam = _config(root / "local"), _config(root / "beam")
  extract.extract(local, target_dir, source_dir)
  extract.extract(beam, target_dir, source_dir,
                  workers=beam_descriptors.BeamPasses(beam, TWO_WORKERS))
  return local.output_dir, beam.output_dir


def test_beam_descriptors_equal_the_local_ones(both):
  local, beam = both
  a, b = store.load_edges(local), store.load_edges(beam)
  for name in ("edges", "lower", "upper", "zero_floor", "channel_weights"):
    np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
  meta_local, meta_beam = store.load_metadata(local), store.load_metadata(beam)
  assert meta_local == meta_beam
  assert [len(e["shards"]) for e in meta_beam["datasets"]] == [3, 4]
  for entry in meta_beam["datasets"]:
    for shard in entry["shards"]:
      with np.load(os.path.join(local, shard)) as x, np.load(os.path.join(beam, shard)) as y:
        assert sorted(x.files) == sorted(y.files)
        for key in x.files:
          np.testing.assert_array_equal(x[key], y[key], err_msg=f"{shard}/{key}")
  assert json.load(open(os.path.join(beam, beam_descriptors.FAILURES_FILENAME))) == []
  assert not [n for _, _, names in os.walk(beam) for n in names if ".tmp" in n]


def test_a_damaged_or_stale_fit_file_is_fitted_again_to_the_same_edges(datasets, both,
                                                                      tmp_path):
  """A rerun reuses fit/ranges.npz and fit/counts.npz only when whole and made from the
  same images and settings: a stale ranges file and a truncated counts file are
  fitted again, and the edges equal the local fit's."""
  target_dir, _ = datasets
  local, beam = both
  out = tmp_path / "d"
  shutil.copytree(beam, out)
  fit = out / beam_descriptors.FIT_DIRNAME
  ranges = dict(np.load(fit / "ranges.npz"))
  files.save_npz_atomic(str(fit / "ranges.npz"), **{**ranges, "lower": ranges["lower"] - 1,
                                                     "inputs": np.array("other images")})
  with open(fit / "counts.npz", "r+b") as f:
    f.truncate(os.path.getsize(fit / "counts.npz") // 2)
  config = _config(out)
  edges = beam_descriptors.BeamPasses(config, TWO_WORKERS).fit_edges(
      extract.make_bank(config.bank, config.dtype_policy), spec_lib.load_spec(target_dir),
      "train")
  np.testing.assert_array_equal(edges.edges, store.load_edges(local).edges)
  assert files.npz_is_whole(str(fit / "counts.npz"))


def test_beam_exact_search_equals_the_local_one_and_resumes(both, tmp_path):
  local, _ = both
  params = manifest.SelectionParams(k0=3, max_neighbours=25, min_images_per_class=2)
  here, _ = select.initial_selection(local, str(tmp_path / "here"), params,
                                     search.SearchConfig(method="exact"),
                                     write_subset=False)
  config = search.SearchConfig(method="exact", pipeline_args=TWO_WORKERS)
  there, folder = select.initial_selection(local, str(tmp_path / "there"), params, config,
                                           write_subset=False)
  np.testing.assert_array_equal(here.neighbours, there.neighbours)
  np.testing.assert_array_equal(here.distances, there.distances)
  np.testing.assert_array_equal(here.selected, there.selected)
  assert here.retained_classes == there.retained_classes
  # One file per source partition; a rerun after a kill (a partition and the result
  # lost, a dead writer's temporary left) completes with the same neighbours.
  work = os.path.join(folder, "beam_search")
  partitions = sorted(os.listdir(os.path.join(work, "partitions")))
  assert partitions == [f"{i:05d}.npz" for i in range(4)]
  os.remove(os.path.join(work, "partitions", partitions[1]))
  os.remove(os.path.join(work, "neighbours.npz"))
  # A truncated partition, and one whole but searched in other source bytes (stale):
  # both searched again, neither read as it is.
  damaged = os.path.join(work, "partitions", partitions[2])
  with open(damaged, "r+b") as f:
    f.truncate(os.path.getsize(damaged) // 2)
  stale = os.path.join(work, "partitions", partitions[3])
  stored = dict(np.load(stale))
  files.save_npz_atomic(stale, **{**stored, "indices": stored["indices"][:, ::-1],
                                  files.INPUTS_KEY: np.array("another shard")})
  open(os.path.join(work, "partitions", f"00001.npz.tmp-{2**22 + 1}.npz"), "w").close()
  again, _ = select.initial_selection(local, str(tmp_path / "there"), params, config,
                                      write_subset=False, reuse=False)
  np.testing.assert_array_equal(here.neighbours, again.neighbours)
  assert sorted(os.listdir(os.path.join(work, "partitions"))) == partitions


def test_a_corrupt_source_shard_is_reported_not_fatal_and_the_cli_runs(datasets, both,
                                                                     tmp_path):
  target_dir, source_dir = datasets
  # The fit and the target's descriptors of the Beam folder are reused (the rerun of a
  # stage resumes): this run's pipeline extracts the source.
  out = tmp_path / "d"
  shutil.copytree(both[1], out, ignore=shutil.ignore_patterns("source"))
  broken = tmp_path / "source"
  subprocess.run(["cp", "-r", source_dir, str(broken)], check=True)
  shard = sorted(p for p in os.listdir(broken) if p.endswith(".tfrecord"))[2]
  data = (broken / shard).read_bytes()
  (broken / shard).write_bytes(data[:len(data) // 2])  # a truncated record
  done = subprocess.run(
      [os.path.join(BIN, "sjft-descriptors"), f"--target_dir={target_dir}",
       f"--source_dir={broken}", f"--output_dir={out}", "--bank=gabor",
       "--resize_size=64", "--crop_size=64", "--lookup_cells=1024", "--noprogress",
       "--runner=DirectRunner",
       "--beam_options=--direct_num_workers=2,--direct_running_mode=multi_processing"],
      capture_output=True, text=True, timeout=600,
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
  assert done.returncode == 0, done.stderr[-3000:]
  assert f"left out (rerun to retry): {broken / shard}" in done.stdout
  failures = json.load(open(out / beam_descriptors.FAILURES_FILENAME))
  assert [f["shard"] for f in failures] == [str(broken / shard)]
  source_entry = store.load_metadata(str(out))["datasets"][1]
  assert len(source_entry["shards"]) == 3 and shard.replace(".tfrecord", ".npz") not in " ".join(
      source_entry["shards"])


def _same_files(a, b, names) -> None:
  for name in names:
    assert (a / name).read_bytes() == (b / name).read_bytes(), name


def _descriptor_files(folder) -> list[str]:
  return sorted(os.path.relpath(os.path.join(d, n), folder) for d, _, names in os.walk(folder)
                for n in names if n.endswith(".npz") and not d.endswith("fit"))


def test_dask_local_cluster_writes_the_local_files_and_neighbours(datasets, both, tmp_path):
  """The DaskRunner on a LocalCluster of 2 worker processes over TCP (the engine a
  multi-machine Dask cluster runs): descriptor files byte-equal to the local path's,
  the failure list written (its tagged-output routing broke it), exact neighbours equal."""
  from sjft_tf import beam as beam_lib  # pylint: disable=g-import-not-at-top
  pytest.importorskip("dask.distributed")
  target_dir, source_dir = datasets
  local, _ = both
  config = _config(tmp_path / "dask")
  params = manifest.SelectionParams(k0=3, max_neighbours=25, min_images_per_class=2)
  with beam_lib.runner_options("dask", workers=2) as args:
    assert "--dask_partition_size=1" in args and any(
        a.startswith("--dask_client_address=tcp://127.0.0.1:") for a in args)
    extract.extract(config, target_dir, source_dir,
                    workers=beam_descriptors.BeamPasses(config, args))
    there, _ = select.initial_selection(
        local, str(tmp_path / "there"), params,
        search.SearchConfig(method="exact", pipeline_args=args), write_subset=False)
  names = _descriptor_files(local)
  assert names == _descriptor_files(config.output_dir) and len(names) == 8  # 7 + edges
  _same_files(type(tmp_path)(local), tmp_path / "dask", names)
  assert json.load(open(tmp_path / "dask" / beam_descriptors.FAILURES_FILENAME)) == []
  here, _ = select.initial_selection(local, str(tmp_path / "here"), params,
                                     search.SearchConfig(method="exact"), write_subset=False)
  np.testing.assert_array_equal(here.neighbours, there.neighbours)
  np.testing.assert_array_equal(here.distances, there.distances)


def test_a_pipeline_whose_sink_is_dropped_is_refused_by_name(datasets, both, tmp_path,
                                                            monkeypatch):
  """A runner that silently skips a branch (the DaskRunner runs only the last of several
  sinks) must not pass: the stage checks every file it expects after the pipeline."""
  target_dir, source_dir = datasets
  out = tmp_path / "d"
  shutil.copytree(both[1], out, ignore=shutil.ignore_patterns("source"))
  config = _config(out)
  monkeypatch.setattr(beam_descriptors.files, "write_json_atomic", lambda *a, **k: None)
  with pytest.raises(ValueError, match=r"the extraction pipeline ended without writing "
                                       r".*beam_failures.json .*runner=DirectRunner"):
    extract.extract(config, target_dir, source_dir,
                    workers=beam_descriptors.BeamPasses(config, ["--runner=DirectRunner"]))


def _free_port() -> int:
  import socket  # pylint: disable=g-import-not-at-top
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_cli_against_a_started_dask_scheduler_and_two_workers(datasets, both, tmp_path):
  """sjft-descriptors and sjft-select with --runner=dask --dask_address against a `dask
  scheduler` and two `dask worker` processes on 127.0.0.1 (started and stopped here):
  the same descriptor files and selection as the local path."""
  pytest.importorskip("dask.distributed")
  target_dir, source_dir = datasets
  local, _ = both
  port = _free_port()
  address = f"tcp://127.0.0.1:{port}"
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  processes = [subprocess.Popen([os.path.join(BIN, "dask"), "scheduler", "--host",
                                 "127.0.0.1", "--port", str(port), "--no-dashboard"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)]
  try:
    processes += [subprocess.Popen([os.path.join(BIN, "dask"), "worker", address,
                                    "--nthreads", "1", "--no-dashboard", "--host",
                                    "127.0.0.1"], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, env=env) for _ in range(2)]
    from dask import distributed  # pylint: disable=g-import-not-at-top
    with distributed.Client(address, timeout=60) as client:
      client.wait_for_workers(2, timeout=120)
    out = tmp_path / "d"
    common = ["--runner=dask", f"--dask_address={address}"]
    done = subprocess.run(
        [os.path.join(BIN, "sjft-descriptors"), f"--target_dir={target_dir}",
         f"--source_dir={source_dir}", f"--output_dir={out}", "--bank=gabor",
         "--resize_size=64", "--crop_size=64", "--lookup_cells=1024", "--noprogress",
         *common], capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    _same_files(type(tmp_path)(local), out, _descriptor_files(local))
    for name, extra in (("here", []), ("there", common)):
      done = subprocess.run(
          [os.path.join(BIN, "sjft-select"), f"--descriptors_dir={local}",
           f"--output_dir={tmp_path / name}", "--k0=3", "--max_neighbours=25",
           "--min_images_per_class=2", "--search=exact", "--nowrite_subset", *extra],
          capture_output=True, text=True, timeout=600, env=env)
      assert done.returncode == 0, (name, done.stderr[-3000:])
    here = manifest.load(str(tmp_path / "here" / "round_000"))
    there = manifest.load(str(tmp_path / "there" / "round_000"))
    np.testing.assert_array_equal(here.neighbours, there.neighbours)
    np.testing.assert_array_equal(here.selected, there.selected)
  finally:
    for process in processes[::-1]:
      process.terminate()
    for process in processes:
      try:
        process.wait(timeout=30)
      except subprocess.TimeoutExpired:
        process.kill()


def test_runner_names_and_options_reach_the_beam_stages():
  from sjft_tf import beam as beam_lib  # pylint: disable=g-import-not-at-top
  from sjft_tf.cli import reproduce, run  # pylint: disable=g-import-not-at-top
  assert beam_lib.runner_name("Dask") == "apache_beam.runners.dask.dask_runner.DaskRunner"
  assert beam_lib.runner_name("direct") == "DirectRunner"
  assert beam_lib.runner_name("my.pkg.MyRunner") == "my.pkg.MyRunner"
  with beam_lib.runner_options("dask", ["--dask_npartitions=4"], dask_address="tcp://h:1") as a:
    assert a == ["--runner=apache_beam.runners.dask.dask_runner.DaskRunner",
                 "--dask_npartitions=4", "--dask_client_address=tcp://h:1"]
  with pytest.raises(ValueError, match="--dask_address needs --runner=dask, not flink"):
    with beam_lib.runner_options("flink", dask_address="tcp://h:1"):
      pass
  with beam_lib.runner_options("") as args:
    assert args == []
  # sjft-run and sjft-reproduce hand their Beam flags to the descriptor and selection stages.
  for module, required in ((run, ["--descriptors_flagfile=a", "--select_flagfile=b",
                                  "--train_flagfile=c", "--eval_flagfile=d"]), (reproduce, [])):
    module.FLAG_VALUES.unparse_flags()
    module.FLAG_VALUES(["tool", *required, "--runner=dask", "--dask_address=tcp://h:1"],
                       known_only=True)
    assert module._BEAM.forwarded() == ["--runner=dask", "--dask_address=tcp://h:1"]
    module.FLAG_VALUES.unparse_flags()
