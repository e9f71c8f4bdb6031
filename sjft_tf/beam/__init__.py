"""The descriptor and selection stages as Apache Beam pipelines, for sources beyond one
machine (DirectRunner / Prism on a laptop, Dataflow, Flink, Spark).

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

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions


def pipeline(pipeline_args) -> beam.Pipeline:
  """A Beam pipeline from command-line style options, e.g. ["--runner=DirectRunner",
  "--direct_num_workers=2", "--direct_running_mode=multi_processing"]."""
  return beam.Pipeline(options=PipelineOptions(list(pipeline_args)))


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
