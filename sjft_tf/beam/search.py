"""The neighbour search on Beam workers: `selection.search.find`'s result, searched
partition by partition on the workers of `SearchConfig.pipeline_args`.

The source is partitioned by descriptor shard. Each worker loads the targets once
(`DoFn.setup`, from <work_dir>/targets.npz) and searches its partitions for every
target (`search.partition_neighbours`: exact, or ScaNN candidates re-ranked by the
exact divergence), writing each partition's top K to <work_dir>/partitions/ (atomic).
A combine keeps every target's global top K (`exact.merge_top_k`, ties by source
index). With exact search the neighbours equal the local exact search's. A rerun
after a killed pipeline reuses the partitions already written when whole and made
from the same shard bytes at the same offset (each records `files.fingerprint` of
them); a damaged or stale partition is searched again, a damaged targets.npz written
again.
"""

import functools
import os
import time

import apache_beam as beam
import numpy as np

from sjft_tf import beam as beam_lib, errors
from sjft_tf import files
from sjft_tf.descriptors import store
from sjft_tf.selection import exact
from sjft_tf.selection import search as search_lib

TARGETS_FILENAME = "targets.npz"
NEIGHBOURS_FILENAME = "neighbours.npz"


class _SearchPartition(beam.DoFn):
  """(partition index, shard path, first source row) -> (distances, indices) of every
  target among that partition."""

  def __init__(self, work_dir: str, k: int, method: str, config):
    self._work_dir, self._k, self._method, self._config = work_dir, k, method, config

  def setup(self):
    data = files.load_npz(os.path.join(self._work_dir, TARGETS_FILENAME),
                          "delete the search's work folder")
    self._targets, self._weights = data["targets"], data["weights"]

  def process(self, element):
    index, shard_path, offset = element
    path = os.path.join(self._work_dir, "partitions", f"{index:05d}.npz")
    source = files.fingerprint({"offset": offset}, shard_path)
    stored = files.npz_made_from(path, source, "searched again")  # before a kill
    if stored is not None:
      yield stored["distances"], stored["indices"]
      return
    block = store.load_shard(shard_path).descriptors
    distances, indices = search_lib.partition_neighbours(
        self._targets, block, offset, self._weights, self._k, self._method, self._config)
    files.save_npz_atomic(path, distances=distances, indices=indices,
                          **{files.INPUTS_KEY: np.array(source)})
    yield distances, indices


def _merge_top_k(k: int, a, b):
  """Every target's k smallest (distance, index) of two partial results."""
  return exact.merge_top_k(*a, *b, k)


def find(descriptors_dir: str, targets: np.ndarray, num_sources: int,
         config: search_lib.SearchConfig) -> search_lib.Neighbours:
  """`search.find`'s neighbours (the same with exact search), searched partition by
  partition on the Beam workers of config.pipeline_args.

  Args:
    targets: float [nt, D]; num_sources: source descriptors in the folder.
    config: the SearchConfig (pipeline_args, work_dir, ScaNN settings, epsilon).
  Returns:
    Neighbours: distances float32 [nt, K], indices int64 [nt, K], ascending, ties by
    source index.
  """
  weights, k, method = search_lib.plan(descriptors_dir, targets, num_sources, config)
  start = time.perf_counter()
  if not config.work_dir:
    raise errors.InputError("a Beam search needs SearchConfig.work_dir (its partition files)")
  work_dir = config.work_dir
  files.remove_stale_temporaries(os.path.join(work_dir, "partitions"))
  targets_path = os.path.join(work_dir, TARGETS_FILENAME)
  try:
    data = files.load_npz(targets_path, "")
  except (FileNotFoundError, ValueError):  # absent, or damaged: written again
    files.save_npz_atomic(targets_path, targets=targets, weights=weights, k=k,
                          method=np.array(method))
  else:
    if not (np.array_equal(data["targets"], targets) and data["k"] == k
            and str(data["method"]) == method):
      raise errors.InputError(f"{work_dir} holds a search of other targets or settings; "
                              f"delete it or use another folder")
  paths = store.shard_paths(descriptors_dir, "source")
  offsets = np.cumsum([0] + [len(store.load_ids_labels(p)[0]) for p in paths])
  elements = [(i, p, int(o)) for i, (p, o) in enumerate(zip(paths, offsets))]
  result_path = os.path.join(work_dir, NEIGHBOURS_FILENAME)
  if os.path.exists(result_path):  # merged again from the partitions: checked below
    os.remove(result_path)
  with beam_lib.pipeline(config.pipeline_args) as p:
    _ = (p | "partitions" >> beam.Create(elements)
         | "search" >> beam.ParDo(_SearchPartition(work_dir, k, method, config))
         | "merge" >> beam.CombineGlobally(
             beam_lib.PairwiseCombine(functools.partial(_merge_top_k, k)))
         | "save" >> beam.Map(lambda r: files.save_npz_atomic(
             result_path, distances=r[0], indices=r[1])))
  partitions = [os.path.join(work_dir, "partitions", f"{i:05d}.npz") for i, _, _ in elements]
  missing = beam_lib.missing_outputs([*partitions, result_path])
  if missing:
    raise errors.InputError(f"the search pipeline ended without writing {', '.join(missing[:3])}"
                            f"{' and more' if len(missing) > 3 else ''} (the runner dropped a "
                            f"step); run sjft-select again, or on another runner")
  with np.load(result_path) as data:
    return search_lib.timed(method, start, len(targets), num_sources, data["distances"],
                            data["indices"])
