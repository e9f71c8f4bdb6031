"""Flags of the stages that can run as Apache Beam pipelines (sjft-descriptors,
sjft-select): --runner and the pipeline options passed through to Beam."""

from absl import flags

_RUNNER = flags.DEFINE_string("runner", "", "Run the stage as an Apache Beam pipeline on this runner (DirectRunner, PrismRunner, DataflowRunner, FlinkRunner, SparkRunner); empty: in this process.")
_BEAM_OPTIONS = flags.DEFINE_list("beam_options", [], "Beam pipeline options passed through, comma-separated without the runner, e.g. --beam_options=--direct_num_workers=2,--direct_running_mode=multi_processing or --beam_options=--project=P,--region=R,--temp_location=gs://B/tmp.")


def pipeline_args() -> list[str]:
  """Beam's command-line options; [] when the stage runs in this process."""
  if not _RUNNER.value:
    if _BEAM_OPTIONS.value:
      raise flags.ValidationError("--beam_options needs --runner")
    return []
  return [f"--runner={_RUNNER.value}", *_BEAM_OPTIONS.value]
