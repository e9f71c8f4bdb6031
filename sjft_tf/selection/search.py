"""Nearest source images of every target image, from a descriptor folder.

"exact" streams the source shards once through `exact.exact_search`; "scann" (which
passes over the source several times and re-reads candidate rows) holds it in memory
when it fits, fits the embedding on a sample, builds (and saves) a ScaNN index, and
re-ranks its candidates exactly; "auto" picks exact while target x source pairs stay small.
"""

import dataclasses
import logging
import time

import numpy as np

from sjft_tf import bounds, errors
from sjft_tf.descriptors import store
from sjft_tf.selection import divergence, embedding, exact
from sjft_tf.selection import index as index_lib

AUTO_EXACT_MAX_PAIR_VALUES = 2e12  # targets x sources x dimension: ~2-3 min exact here
IN_MEMORY_MAX_BYTES = 8 * 2**30    # sources held as float16 (as stored) up to this size
BLOCK_ROWS = 20000


@dataclasses.dataclass
class SearchConfig:
  """How neighbours are found.

  Attributes:
    method: "exact", "scann" or "auto".
    num_neighbours: K, neighbours per target.
    epsilon: added inside the logs of the divergence.
    index: ScaNN parameters (method "scann").
    index_dir: where the index is saved ("" : not saved).
    pipeline_args: Beam pipeline options (e.g. ["--runner=DirectRunner",
      "--direct_num_workers=2", "--direct_running_mode=multi_processing"]): `select`
      searches the source's partitions on Beam workers (`sjft_tf.beam.search.find`);
      empty: here (`find`).
    work_dir: the Beam search's folder of per-partition results (resume).
  """
  method: str = dataclasses.field(default="auto", metadata={
      "flag": {"enum_values": ["auto", "exact", "scann"]}})
  num_neighbours: int = bounds.field(5000, lower=1)
  epsilon: float = bounds.field(divergence.DEFAULT_EPSILON, lower=1e-30)
  index: index_lib.IndexConfig = dataclasses.field(default_factory=index_lib.IndexConfig)
  index_dir: str = ""
  pipeline_args: list[str] = dataclasses.field(default_factory=list)
  work_dir: str = ""

  def __post_init__(self):
    bounds.check(self)


@dataclasses.dataclass
class Neighbours:
  distances: np.ndarray   # float32 [nt, K]
  indices: np.ndarray     # int64 [nt, K] into the source descriptors, in shard order
  method: str
  seconds: float


def _shard_blocks(descriptors_dir: str):
  for path in store.shard_paths(descriptors_dir, "source"):
    yield store.load_shard(path).descriptors


class SourceDescriptors:
  """The source descriptors of a folder: held in memory as float16 when they fit
  IN_MEMORY_MAX_BYTES (float16 is how shards store them, so nothing is lost), else
  read shard by shard on every pass."""

  def __init__(self, descriptors_dir: str, num_sources: int, dimension: int,
               array: np.ndarray | None = None):
    self.directory = descriptors_dir
    self.array = array
    if array is None and num_sources * dimension * 2 <= IN_MEMORY_MAX_BYTES:
      self.array = np.concatenate([b.astype(np.float16) for b in _shard_blocks(descriptors_dir)])

  def blocks(self):
    """float32 blocks in source order."""
    if self.array is None:
      yield from _shard_blocks(self.directory)
      return
    for start in range(0, len(self.array), BLOCK_ROWS):
      yield self.array[start:start + BLOCK_ROWS].astype(np.float32)

  def rows_source(self):
    """What `index.rerank` reads candidate rows from."""
    return self.array if self.array is not None else self.blocks()


def resolved_method(config: SearchConfig, num_targets: int, num_sources: int,
                    dimension: int) -> str:
  """"exact" or "scann": config.method, with "auto" decided by the amount of work."""
  if config.method != "auto":
    return config.method
  work = float(num_targets) * num_sources * dimension
  return "exact" if work <= AUTO_EXACT_MAX_PAIR_VALUES else "scann"


def partition_neighbours(targets: np.ndarray, block: np.ndarray, offset: int,
                         weights: np.ndarray, k: int, method: str, config: SearchConfig):
  """Each target's k nearest among one partition of the source (rows offset, offset+1,
  ...), by exact divergence: an exact pass, or ScaNN candidates re-ranked exactly.

  Args:
    targets: float [nt, D]; block: float [n, D] the partition's descriptors.
  Returns:
    (distances float32 [nt, k'], indices int64 [nt, k'] into the whole source),
    ascending (ties by index), k' = min(k, n).
  """
  k = min(k, len(block))
  if method == "exact" or k == len(block):
    distances, indices = exact.exact_search(targets, [block], weights, k, config.epsilon)
  else:
    sources = SourceDescriptors("", len(block), block.shape[1], block.astype(np.float16))
    distances, indices = _approximate(sources, targets, len(block), weights, k,
                                      dataclasses.replace(config, index_dir=""))
  return distances, indices + offset


def plan(descriptors_dir: str, targets: np.ndarray, num_sources: int,
         config: SearchConfig) -> tuple[np.ndarray, int, str]:
  """(the divergence's weights float32 [D], K, "exact" or "scann") of a search of
  targets [nt, D] among the folder's num_sources source descriptors."""
  weights = store.load_edges(descriptors_dir).dimension_weights()
  k = min(config.num_neighbours, num_sources)
  return weights, k, resolved_method(config, len(targets), num_sources, targets.shape[1])


def timed(method: str, started: float, num_targets: int, num_sources: int,
          distances: np.ndarray, indices: np.ndarray) -> Neighbours:
  """The Neighbours of a search begun at `started` (time.perf_counter), logged."""
  seconds = time.perf_counter() - started
  logging.info("%s search: %d targets x %d sources in %.1f s", method, num_targets,
               num_sources, seconds)
  return Neighbours(distances, indices, method, seconds)


def find(descriptors_dir: str, targets: np.ndarray, num_sources: int,
         config: SearchConfig) -> Neighbours:
  """Neighbours of targets [nt, D] among the folder's source descriptors, searched in
  this process (config.pipeline_args is for `sjft_tf.beam.search.find`, which
  `select` calls instead)."""
  weights, k, method = plan(descriptors_dir, targets, num_sources, config)
  start = time.perf_counter()
  if method == "exact":  # one streamed pass: nothing to hold in memory
    distances, indices = exact.exact_search(targets, _shard_blocks(descriptors_dir), weights,
                                            k, config.epsilon)
  elif method == "scann":
    sources = SourceDescriptors(descriptors_dir, num_sources, targets.shape[1])
    distances, indices = _approximate(sources, targets, num_sources, weights, k, config)
  else:
    raise errors.InputError(f"unknown search method {method!r} (exact, scann, auto)")
  return timed(method, start, len(targets), num_sources, distances, indices)


def _approximate(sources: SourceDescriptors, targets, num_sources, weights, k, config):
  every = max(1, num_sources // config.index.fit_sample_size)
  sample = np.concatenate([b[::every] for b in sources.blocks()])
  projection = embedding.fit(sample, weights, config.index.dimensions)
  del sample
  embedded = np.concatenate([projection.embed(b) for b in sources.blocks()])
  count = k * config.index.candidates_per_neighbour
  searcher = index_lib.build(embedded, config.index, min(count, num_sources))
  if config.index_dir:
    index_lib.save(config.index_dir, searcher, projection, config.index, num_sources)
  del embedded
  candidate_indices = index_lib.candidates(searcher, projection.embed(targets),
                                       min(count, num_sources))
  return index_lib.rerank(targets, candidate_indices, sources.rows_source(), weights, k,
                          config.epsilon)
