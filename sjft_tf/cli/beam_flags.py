"""Flags of the stages that can run as Apache Beam pipelines (sjft-descriptors,
sjft-select, and sjft-run / sjft-reproduce through their flag files): --runner, the
Dask cluster, and the pipeline options passed through to Beam."""

import contextlib

from absl import flags


def define(flag_values: flags.FlagValues):
  """Defines --runner, --beam_options, --beam_workers and --dask_address on a tool's
  flags; returns runner_options(): a context manager yielding the pipeline options
  (sjft_tf.beam.runner_options; [] when the stage runs in this process)."""
  runner = flags.DEFINE_string("runner", "", "Run the stage as an Apache Beam pipeline on this runner: direct, dask, dataflow, flink, spark, prism, or a runner's class name or dotted path; empty: in this process.", flag_values=flag_values)
  options = flags.DEFINE_list("beam_options", [], "Beam pipeline options passed through, comma-separated without the runner, e.g. --beam_options=--direct_num_workers=2,--direct_running_mode=multi_processing or --beam_options=--project=P,--region=R,--temp_location=gs://B/tmp.", flag_values=flag_values)
  workers = flags.DEFINE_integer("beam_workers", 2, "With --runner=dask and no --dask_address: the processes of the Dask LocalCluster the command starts (one thread each) and closes.", lower_bound=1, flag_values=flag_values)
  address = flags.DEFINE_string("dask_address", "", "With --runner=dask: a running Dask scheduler (tcp://HOST:8786) whose workers run the pipeline; empty: a LocalCluster of --beam_workers.", flag_values=flag_values)

  def runner_options():
    if not (runner.value or options.value or address.value):
      return contextlib.nullcontext([])  # in this process: Beam is not imported
    from sjft_tf import beam as beam_lib  # pylint: disable=g-import-not-at-top
    return beam_lib.runner_options(runner.value, options.value, workers.value, address.value)

  def forwarded() -> list[str]:
    """These flags as given, for a stage run by sjft-run or sjft-reproduce."""
    given = [(runner, runner.value), (options, ",".join(options.value)),
             (workers, workers.value if workers.present else None), (address, address.value)]
    return [f"--{holder.name}={value}" for holder, value in given if value]

  runner_options.forwarded = forwarded
  return runner_options
