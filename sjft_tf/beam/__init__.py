"""The descriptor and selection stages as Apache Beam pipelines, for sources beyond one
machine (DirectRunner / Prism on a laptop, a Dask cluster, Dataflow, Flink, Spark).

Every pipeline has one output per DoFn and one sink, and the stage checks after each
that every file it expects was written: runners differ in what they run (the
DaskRunner runs only the last of several sinks and hands every output of a DoFn to each
of its tagged outputs), and a dropped branch must fail by name, not silently.

  descriptors  the fitting passes (a combine of per-shard ranges and counts) and the
               extraction (one descriptor file per input shard) on workers
  search       each worker searches its partition of the source for every target; a
               combine keeps every target's global top K

The workers run the functions of `sjft_tf.descriptors.extract` and
`sjft_tf.selection.search` that the local path runs, so the files are the same. They
read and write the descriptor folder through the file system: on a cluster it must be
one every worker mounts (NFS, Filestore, a GCS FUSE mount). Importing this package
needs `apache-beam` (requirements.txt).
"""

import contextlib
import os

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from sjft_tf import errors

# --runner's short names; any other value (a Beam runner's class name, or a dotted path
# to one) passes through as it is.
RUNNERS = {"direct": "DirectRunner", "dask": "apache_beam.runners.dask.dask_runner.DaskRunner",
           "dataflow": "DataflowRunner", "flink": "FlinkRunner", "spark": "SparkRunner",
           "prism": "PrismRunner"}


def runner_name(runner: str) -> str:
  """Beam's name of a --runner value: direct, dask, dataflow, flink, spark, prism
  (any case), or a runner's class name or dotted path as it is."""
  return RUNNERS.get(runner.lower(), runner)


def is_dask(pipeline_args) -> bool:
  return any(a.split("=", 1)[-1] == RUNNERS["dask"] for a in pipeline_args
             if a.startswith("--runner="))


def pipeline(pipeline_args) -> beam.Pipeline:
  """A Beam pipeline from command-line style options, e.g. ["--runner=DirectRunner",
  "--direct_num_workers=2", "--direct_running_mode=multi_processing"]."""
  return beam.Pipeline(options=PipelineOptions(list(pipeline_args)))


@contextlib.contextmanager
def dask_cluster(workers: int):
  """A Dask LocalCluster of `workers` processes of one thread each on 127.0.0.1, closed
  on exit; yields its scheduler's address (--dask_client_address)."""
  from dask import distributed  # pylint: disable=g-import-not-at-top
  with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                host="127.0.0.1", dashboard_address=None) as cluster:
    yield cluster.scheduler_address


@contextlib.contextmanager
def runner_options(runner: str, options=(), workers: int = 2, dask_address: str = ""):
  """Yields the pipeline options of `runner` ([] for no runner: the stage runs in this
  process). For dask: against the scheduler at `dask_address`, else a LocalCluster of
  `workers` processes started here and closed on exit; one element a partition, so that
  the shards spread over the workers (the DaskRunner's default puts 128 in one)."""
  if not runner:
    if options or dask_address:
      raise errors.InputError("--beam_options and --dask_address need --runner")
    yield []
    return
  args = [f"--runner={runner_name(runner)}", *options]
  if not is_dask(args):
    if dask_address:
      raise errors.InputError(f"--dask_address needs --runner=dask, not {runner}")
    yield args
    return
  args += [] if any(a.startswith(("--dask_partition_size", "--dask_npartitions"))
                    for a in options) else ["--dask_partition_size=1"]
  if dask_address:
    yield [*args, f"--dask_client_address={dask_address}"]
    return
  with dask_cluster(workers) as address:
    yield [*args, f"--dask_client_address={address}"]


def missing_outputs(paths) -> list[str]:
  """The paths of `paths` that do not exist: what a pipeline that should have written
  them left out (a runner that drops a branch fails no step)."""
  return [p for p in paths if not os.path.exists(p)]


class PairwiseCombine(beam.CombineFn):
  """Combines a PCollection with an associative `merge(a, b)`; None elements (e.g. an
  empty shard) are skipped, and the output is None when nothing was combined."""

  def __init__(self, merge):
    self._merge = merge

  def create_accumulator(self):
    return None

  def add_input(self, accumulator, element):
    if element is None:
      return accumulator
    return element if accumulator is None else self._merge(accumulator, element)

  def merge_accumulators(self, accumulators):
    merged = None
    for accumulator in accumulators:
      merged = self.add_input(merged, accumulator)
    return merged

  def extract_output(self, accumulator):
    return accumulator
