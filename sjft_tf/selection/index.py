"""Approximate nearest sources: a ScaNN index over the Hellinger-PCA embedding, then an
exact re-rank of each target's candidates by the true divergence.

The index is built with ScaNN's TensorFlow ops and saved as a TensorFlow module: the
same file answers numpy queries here and loads in a TF graph
(`scann_ops.searcher_from_module(tf.saved_model.load(...))`). Stock TF Serving cannot
run ScaNN's custom ops, so the served model is the classifier only.
"""

import dataclasses
import math
import os

import numpy as np
import tensorflow as tf

from sjft_tf import bounds, files
from sjft_tf.selection import divergence, embedding, exact

EMBEDDING_FILENAME = "embedding.npz"
SEARCHER_DIRNAME = "scann"
INDEX_CONFIG_FILENAME = "index_config.json"


@dataclasses.dataclass
class IndexConfig:
  """ScaNN parameters (defaults tuned by tools/benchmark_selection.py).

  Attributes:
    dimensions: PCA dimensions of the embedding (0: no reduction).
    num_leaves: k-means partitions (0: about sqrt(number of sources)).
    leaves_to_search: partitions searched per query (0: a fifth of num_leaves, >= 1).
    candidates_per_neighbour: K' = this times K candidates go to the exact re-rank
      (3 kept recall@100 at 0.96-0.98 from 30,000 to a million sources).
    quantize: score candidates with anisotropic 4-bit codes (faster, approximate)
      instead of exact dot products of the embedding.
    fit_sample_size: source descriptors the PCA is fitted on.
  """
  dimensions: int = bounds.field(128, lower=1)
  num_leaves: int = bounds.field(0, lower=0)
  leaves_to_search: int = bounds.field(0, lower=0)
  candidates_per_neighbour: int = bounds.field(3, lower=1)
  quantize: bool = False
  fit_sample_size: int = bounds.field(20000, lower=1)

  def __post_init__(self):
    bounds.check(self)

  def leaves(self, num_sources: int, num_candidates: int) -> tuple[int, int]:
    """(partitions, partitions searched); those searched hold at least twice the
    candidates asked for, on average (a search cannot return more than they hold)."""
    num_leaves = self.num_leaves or max(1, int(math.sqrt(num_sources)))
    num_leaves = min(num_leaves, num_sources)
    searched = self.leaves_to_search or max(1, num_leaves // 5)
    enough = math.ceil(2 * num_candidates * num_leaves / max(num_sources, 1))
    return num_leaves, min(max(searched, enough), num_leaves)


def build(embeddings: np.ndarray, config: IndexConfig, num_neighbours: int,
          distance: str = "squared_l2"):
  """The one ScaNN searcher builder (TF ops) over embeddings float32 [n, d].

  Args:
    distance: "squared_l2" (the Hellinger-PCA embedding of the descriptors) or
      "dot_product" (unit-norm deep features: cosine).
  """
  num_leaves, searched = config.leaves(len(embeddings), num_neighbours)
  from scann.scann_ops.py import scann_ops  # pylint: disable=g-import-not-at-top
  builder = scann_ops.builder(embeddings, num_neighbours, distance)
  if num_leaves > 1:
    builder = builder.tree(num_leaves=num_leaves, num_leaves_to_search=searched,
                           training_sample_size=min(len(embeddings), 250000))
  if config.quantize:
    builder = builder.score_ah(2, anisotropic_quantization_threshold=float("nan")).reorder(
        num_neighbours)
  else:
    builder = builder.score_brute_force()
  return builder.build()


def save(directory: str, searcher, projection: embedding.HellingerPCA,
         config: IndexConfig, num_sources: int) -> None:
  """Writes embedding.npz, scann/ (a TF SavedModel) and index_config.json."""
  os.makedirs(directory, exist_ok=True)
  projection.save(os.path.join(directory, EMBEDDING_FILENAME))
  tf.saved_model.save(searcher.serialize_to_module(),
                      os.path.join(directory, SEARCHER_DIRNAME))
  files.write_json_atomic(os.path.join(directory, INDEX_CONFIG_FILENAME),
                          {**dataclasses.asdict(config), "num_sources": num_sources})


def load(directory: str):
  """(searcher, projection) of a saved index."""
  module = tf.saved_model.load(os.path.join(directory, SEARCHER_DIRNAME))
  from scann.scann_ops.py import scann_ops  # pylint: disable=g-import-not-at-top
  searcher = scann_ops.searcher_from_module(module)
  return searcher, embedding.HellingerPCA.load(os.path.join(directory, EMBEDDING_FILENAME))


def candidates(searcher, queries: np.ndarray, count: int, batch: int = 4096) -> np.ndarray:
  """int64 [n, count] candidate source indices (-1 where fewer exist)."""
  found = []
  for i in range(0, len(queries), batch):
    indices, _ = searcher.search_batched_parallel(queries[i:i + batch],
                                                  final_num_neighbors=count)
    found.append(indices.numpy().astype(np.int64))
  result = np.concatenate(found)
  if result.shape[1] < count:
    result = np.pad(result, ((0, 0), (0, count - result.shape[1])), constant_values=-1)
  return result


def rerank(targets: np.ndarray, candidate_indices: np.ndarray, sources,
           weights: np.ndarray, k: int, epsilon: float = divergence.DEFAULT_EPSILON):
  """Exact divergences of each target's candidates; keeps the best k.

  The candidates' rows are copied into one compact array (memory: distinct candidates
  x D x 8 bytes), then each target is compared with its own rows
  (`divergence.divergence_to_rows`).
  Args:
    targets: float [n, D].
    candidate_indices: int64 [n, c] source indices (-1: none).
    sources: all source descriptors as one array [N, D] (any float dtype; rows are
      read directly), or an iterable of float [n_i, D] blocks in source order (one
      streaming pass).
  Returns:
    (distances float32 [n, k], indices int64 [n, k]) ascending; missing entries have
    distance inf and index -1.
  """
  valid = candidate_indices >= 0
  union, inverse = np.unique(candidate_indices[valid], return_inverse=True)
  compact_rows = np.zeros(candidate_indices.shape, np.int64)
  compact_rows[valid] = inverse
  # Rows padded to a power of two: XLA compiles per shape, and similar-sized calls
  # then share one compilation (2-18 s each). Padding rows hold zeros, never read.
  padded_rows = 1 << max(0, int(len(union) - 1).bit_length())
  count, dimension = len(union), targets.shape[1]
  values = np.zeros((padded_rows, dimension), np.float32)
  if hasattr(sources, "shape"):
    values[:count] = sources[union]
  else:
    offset = 0
    for block in sources:
      low, high = np.searchsorted(union, [offset, offset + len(block)])
      values[low:high] = np.asarray(block)[union[low:high] - offset]
      offset += len(block)
  sources = divergence.prepare(values, weights, epsilon, weighted=False, valid_rows=count)
  distances = divergence.divergence_to_rows(
      divergence.prepare(targets, weights, epsilon), sources, compact_rows)
  distances[~valid] = np.inf
  n = len(targets)
  return exact.merge_top_k(np.zeros((n, 0), np.float32), np.zeros((n, 0), np.int64),
                           distances, np.where(valid, candidate_indices, -1), k)
