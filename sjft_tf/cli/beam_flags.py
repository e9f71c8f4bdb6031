"""Flags of the stages that can run as Apache Beam pipelines (sjft-descriptors,
sjft-select): --runner and the pipeline options passed through to Beam."""

from absl import flags


def define(flag_values: flags.FlagValues):
  """Defines --runner and --beam_options on a tool's flags; returns pipeline_args()."""
  runner = flags.DEFINE_string("runner", "", "Run the stage as an Apache Beam pipeline on this runner (DirectRunner, PrismRunner, DataflowRunner, FlinkRunner, SparkRunner); empty: in this process.", flag_values=flag_values)
  options = flags.DEFINE_list("beam_options", [], "Beam pipeline options passed through, comma-separated without the runner, e.g. --beam_options=--direct_num_workers=2,--direct_running_mode=multi_processing or --beam_options=--project=P,--region=R,--temp_location=gs://B/tmp.", flag_values=flag_values)

  def pipeline_args() -> list[str]:
    """Beam's command-line options; [] when the stage runs in this process."""
    if not runner.value:
      if options.value:
        raise ValueError("--beam_options needs --runner")
      return []
    return [f"--runner={runner.value}", *options.value]
  return pipeline_args
