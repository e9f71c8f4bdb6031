"""Descriptor extraction on Beam workers: `extract.extract(config, ..., workers=
BeamPasses(config, pipeline_args))`.

Three pipelines, each over the input shards (one element per TFRecord shard):
  1. ranges of every target shard, combined by min/max   -> <output>/fit/ranges.npz
  2. fine-grid counts of every target shard, summed      -> <output>/fit/counts.npz
  3. descriptors of every shard of every requested split -> <output>/<role>/<shard>.npz
Each worker builds the Keras filter bank once (`DoFn.setup`) and runs the same
per-shard functions as the local path (`extract.EdgeFitter`, `extract.extract_shard`),
so the edges equal the local fit and the descriptor files are the same. Every file is
written atomically; a rerun after a killed pipeline skips what is complete (a fit file
only when whole and made from the same images and settings). A shard
a worker cannot read (a corrupt record) is reported in <output>/beam_failures.json and
left out, not fatal: a rerun retries it.
"""

import dataclasses
import json
import logging
import os

import apache_beam as beam
import numpy as np
import tensorflow as tf

from sjft_tf import beam as beam_lib, errors
from sjft_tf import files
from sjft_tf.data import spec as spec_lib
from sjft_tf.descriptors import extract, store

FIT_DIRNAME = "fit"
FAILURES_FILENAME = "beam_failures.json"


class _Ranges(beam.DoFn):
  """(spec_dir, split, shard index) -> that shard's (lower, upper) or None."""

  def __init__(self, config: extract.ExtractionConfig):
    self._config = config

  def setup(self):
    self._fitter = extract.EdgeFitter(extract.make_bank(self._config.bank, self._config.dtype_policy), self._config)

  def process(self, element):
    spec_dir, split, index = element
    yield self._fitter.shard_ranges(spec_lib.load_spec(spec_dir), split, index)


def _merge_ranges(a, b):
  return extract.combine_ranges([a, b])


class _Counts(_Ranges):
  """(spec_dir, split, shard index) -> int64 [C, fine_bins] counts in [lower, upper]."""

  def __init__(self, config: extract.ExtractionConfig, lower, upper):
    super().__init__(config)
    self._lower, self._upper = lower, upper

  def process(self, element):
    spec_dir, split, index = element
    yield self._fitter.shard_counts(spec_lib.load_spec(spec_dir), split, index,
                                    self._lower, self._upper)


class _Extract(beam.DoFn):
  """(role, spec_dir, split, shard index) -> nothing when its descriptor shard is
  written, a failure record when the shard cannot be read: one output (runners differ
  in how they route tagged outputs; the written shards are checked on disk after)."""

  def __init__(self, config: extract.ExtractionConfig):
    self._config = config

  def setup(self):
    bank = extract.make_bank(self._config.bank, self._config.dtype_policy)
    edges = store.load_edges(self._config.output_dir)
    self._compute = extract.compiled_descriptors(
        extract.descriptor_model(bank, edges, self._config))

  def process(self, element):
    role, spec_dir, split, index = element
    spec = spec_lib.load_spec(spec_dir)
    try:
      extract.extract_shard(self._compute, spec, split, role, index, self._config)
    except (tf.errors.OpError, ValueError) as error:
      yield {"shard": spec.shard_paths(split)[index], "role": role, "split": split,
             "error": " ".join(str(error).split())[:500]}


@dataclasses.dataclass
class BeamPasses:
  """Runs the fitting and extraction passes as Beam pipelines.

  Attributes:
    config: the extraction settings (the same object the local path takes).
    pipeline_args: Beam pipeline options, e.g. ["--runner=DirectRunner",
      "--direct_num_workers=2", "--direct_running_mode=multi_processing"].
  """
  config: extract.ExtractionConfig
  pipeline_args: list[str]
  failures: list[dict] = dataclasses.field(default_factory=list)

  def _fit_path(self, name: str) -> str:
    return os.path.join(self.config.output_dir, FIT_DIRNAME, name)

  def fit_edges(self, bank, spec: spec_lib.DatasetSpec, split: str) -> store.Edges:
    """The equal-mass edges of `spec`'s `split`: a min/max combine, then a sum."""
    shards = [(spec.directory, split, i) for i in range(len(spec.split(split).shards))]
    ranges_path, counts_path = self._fit_path("ranges.npz"), self._fit_path("counts.npz")
    settings = {key: value for key, value in dataclasses.asdict(self.config).items()
                if key not in ("output_dir", "show_progress", "storage")}
    inputs = np.array(files.fingerprint({"settings": settings,
                                         "images": spec.split_fingerprint(split)}))
    ranges = files.npz_made_from(ranges_path, inputs, "fitted again")
    if ranges is None:
      with beam_lib.pipeline(self.pipeline_args) as p:
        _ = (p | "shards" >> beam.Create(shards)
             | "ranges" >> beam.ParDo(_Ranges(self.config))
             | "combine" >> beam.CombineGlobally(beam_lib.PairwiseCombine(_merge_ranges))
             | "save" >> beam.Map(lambda r: files.save_npz_atomic(
                 ranges_path, lower=r[0], upper=r[1], inputs=inputs)))
      self._check_written([ranges_path], "the ranges")
      ranges = files.load_npz(ranges_path, "rerun sjft-descriptors")
    lower, upper = ranges["lower"], ranges["upper"]
    counts = files.npz_made_from(counts_path, inputs, "fitted again")
    if counts is None:
      with beam_lib.pipeline(self.pipeline_args) as p:
        _ = (p | "shards" >> beam.Create(shards)
             | "counts" >> beam.ParDo(_Counts(self.config, lower, upper))
             | "sum" >> beam.CombineGlobally(sum)
             | "save" >> beam.Map(lambda c: files.save_npz_atomic(
                 counts_path, counts=c, inputs=inputs)))
      self._check_written([counts_path], "the counts")
      counts = files.load_npz(counts_path, "rerun sjft-descriptors")
    return extract.edges_from_counts(counts["counts"], lower, upper, bank, self.config)

  def extract(self, jobs) -> list[list[str]]:
    """Descriptor shards of every (role, spec, split) job, one pipeline for all.

    Returns:
      Per job, its descriptor shards in input order (failed shards left out; they
      are listed in `failures` and in beam_failures.json).
    """
    elements = [(role, spec.directory, split, i) for role, spec, split in jobs
                for i in range(len(spec.split(split).shards))]
    failures_path = os.path.join(self.config.output_dir, FAILURES_FILENAME)
    if os.path.exists(failures_path):  # of an earlier call: this pipeline writes it anew
      os.remove(failures_path)
    with beam_lib.pipeline(self.pipeline_args) as p:
      _ = (p | "shards" >> beam.Create(elements)
           | "extract" >> beam.ParDo(_Extract(self.config))
           | "gather" >> beam.combiners.ToList()
           | "save" >> beam.Map(lambda items: files.write_json_atomic(
               failures_path, sorted(items, key=lambda item: item["shard"]))))
    self._check_written([failures_path], "the extraction")
    with open(failures_path) as f:
      self.failures = json.load(f)
    for item in self.failures:
      logging.warning("descriptors: %s left out (%s); rerun to retry", item["shard"],
                      item["error"])
    failed = {item["shard"] for item in self.failures}
    written = [[out for i, out in enumerate(extract.shard_outputs(spec, split, role))
                if spec.shard_paths(split)[i] not in failed]
               for role, spec, split in jobs]
    self._check_written([os.path.join(self.config.output_dir, out)
                         for outs in written for out in outs], "the extraction")
    return written

  def _check_written(self, paths, what: str) -> None:
    """Refuses, naming them, the files a pipeline should have written and did not."""
    missing = beam_lib.missing_outputs(paths)
    if missing:
      shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
      runner = " ".join(a for a in self.pipeline_args if a.startswith("--runner"))
      raise errors.InputError(f"{what} pipeline ended without writing {shown} (the runner "
                              f"{runner} dropped a step); run sjft-descriptors again, or on "
                              f"another runner")
