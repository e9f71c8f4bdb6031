"""Adaptive equal-mass histograms of filter responses (Ge & Yu 2017, section 3.1).

Edges are fitted on the TARGET training images in two streamed passes: pass one finds
each channel's min and max response, pass two counts responses in a fine uniform grid
of `fine_bins` cells per channel; the B-1 inner edges are then placed on grid
boundaries so each of the B bins holds as close to 1/B of the responses as the grid
allows. Source images are histogrammed with the same edges.

Binning is exact and fast: bin k of channel c holds edges[c, k-1] <= x < edges[c, k]
(values below the first edge go to bin 0, at or above the last to bin B-1), the same
as np.histogram with those edges. A value is first placed in a cell of a uniform lookup
grid (one multiply and a floor); a table gives the number of edges in earlier cells,
and the value is compared only with the few edges inside its own cell. Because the
cell function is monotone under IEEE rounding, this equals comparing with every edge.
"""

import keras
import numpy as np
from keras import ops

DEFAULT_FINE_BINS = 65536
DEFAULT_LOOKUP_CELLS = 4096


def grid_cells(values, lower, inverse_step, num_cells: int):
  """Cell of each value on a uniform per-channel grid, clipped to [0, num_cells - 1].

  Args:
    values: float [..., channels].
    lower: float32 [channels], the grid's start.
    inverse_step: float32 [channels], cells per unit of response (0 for a flat grid).
  Returns:
    int32, the shape of `values`.
  """
  position = ops.floor((values - lower) * inverse_step)
  return ops.cast(ops.clip(position, 0, num_cells - 1), "int32")


def _grid(lower: np.ndarray, upper: np.ndarray, num_cells: int):
  lower = lower.astype(np.float32)
  span = (upper.astype(np.float64) - lower)
  inverse_step = np.where(span > 0, num_cells / np.where(span > 0, span, 1), 0)
  return lower, inverse_step.astype(np.float32)


def _flatten_maps(response_maps):
  """[batch, h, w, c] maps -> list of ([batch, h*w, c] float32, c)."""
  flat = []
  for response in response_maps:
    shape = ops.shape(response)
    flat.append((ops.reshape(ops.cast(response, "float32"), (shape[0], -1, shape[-1])),
                 int(shape[-1])))
  return flat


def batch_ranges(response_maps):
  """Per-channel min and max over a batch: (float32 [C], float32 [C]), maps concatenated."""
  lows, highs = [], []
  for flat, _ in _flatten_maps(response_maps):
    lows.append(ops.min(flat, axis=(0, 1)))
    highs.append(ops.max(flat, axis=(0, 1)))
  return ops.concatenate(lows, 0), ops.concatenate(highs, 0)


def batch_fine_counts(response_maps, lower, upper, fine_bins: int = DEFAULT_FINE_BINS):
  """Counts of a batch's responses in a uniform grid per channel: int32 [C, fine_bins].

  Args:
    response_maps: list of [batch, h, w, c_i]; C = sum of c_i.
    lower, upper: numpy float32 [C], the channels' ranges (pass one).
  """
  grid_lower, inverse_step = _grid(np.asarray(lower), np.asarray(upper), fine_bins)
  counts, start = [], 0
  for flat, channels in _flatten_maps(response_maps):
    cells = grid_cells(flat, grid_lower[start:start + channels],
                       inverse_step[start:start + channels], fine_bins)
    keys = cells + ops.arange(channels, dtype="int32") * fine_bins
    counts.append(ops.reshape(ops.bincount(ops.reshape(keys, (-1,)),
                                           minlength=channels * fine_bins),
                              (channels, fine_bins)))
    start += channels
  return ops.concatenate(counts, 0)


def equal_mass_edges(fine_counts: np.ndarray, lower: np.ndarray, upper: np.ndarray,
                     num_bins: int) -> np.ndarray:
  """Places B-1 inner edges per channel on fine-grid boundaries, equal mass between.

  Args:
    fine_counts: [C, F] counts over the uniform grids from `batch_fine_counts`.
    lower, upper: [C] the grids' ranges.
    num_bins: B.
  Returns:
    float32 [C, B-1], non-decreasing along each row. Where one fine cell holds more
    than 1/B of the mass (a point mass), neighbouring edges coincide (empty bins).
  """
  fine_counts = np.asarray(fine_counts, np.float64)
  channels, fine_bins = fine_counts.shape
  cumulative = np.cumsum(fine_counts, axis=1)
  totals = cumulative[:, -1:]
  targets = totals * (np.arange(1, num_bins) / num_bins)[None, :]
  edges = np.empty((channels, num_bins - 1), np.float32)
  step = (np.asarray(upper, np.float64) - np.asarray(lower, np.float64)) / fine_bins
  for c in range(channels):
    # Boundary j (1..F-1) has cumulative[c, j-1] responses below it; take the nearest.
    after = np.clip(np.searchsorted(cumulative[c], targets[c]), 0, fine_bins - 1)
    before = np.clip(after - 1, 0, fine_bins - 1)
    take_before = (np.abs(cumulative[c, before] - targets[c])
                   <= np.abs(cumulative[c, after] - targets[c]))
    boundary = np.clip(np.where(take_before, before, after) + 1, 1, fine_bins - 1)
    edges[c] = (np.float64(lower[c]) + boundary * step[c]).astype(np.float32)
  return np.maximum.accumulate(edges, axis=1)


def _lookup_tables(edges: np.ndarray, lookup_cells: int):
  """The lookup grid over each channel's [first edge, last edge] and its tables."""
  channels, num_edges = edges.shape
  lower, inverse_step = _grid(edges[:, 0], edges[:, -1], lookup_cells)
  # The edges' cells, computed by the same keras.ops function as the values' cells.
  edge_cells = ops.convert_to_numpy(grid_cells(
      ops.convert_to_tensor(edges.T), lower, inverse_step, lookup_cells)).T
  count_before = np.zeros((channels, lookup_cells), np.int32)
  cell_edges: dict[tuple[int, int], list] = {}
  for c in range(channels):
    per_cell = np.bincount(edge_cells[c], minlength=lookup_cells)
    count_before[c] = np.concatenate([[0], np.cumsum(per_cell)[:-1]])
    for cell, value in zip(edge_cells[c], edges[c]):
      cell_edges.setdefault((c, int(cell)), []).append(value)
  distinct = {key: np.unique(np.asarray(vals, np.float32), return_counts=True)
              for key, vals in cell_edges.items()}
  width = max(len(values) for values, _ in distinct.values())
  values = np.full((channels, lookup_cells, width), np.inf, np.float32)
  multiplicity = np.zeros((channels, lookup_cells, width), np.int32)
  for (c, cell), (cell_values, counts) in distinct.items():
    values[c, cell, :len(cell_values)] = cell_values
    multiplicity[c, cell, :len(counts)] = counts
  return lower, inverse_step, count_before, values, multiplicity


@keras.saving.register_keras_serializable(package="sjft_tf")
class HistogramLayer(keras.layers.Layer):
  """Per-channel normalised histograms with fixed bin edges.

  Call: a list of response maps [batch, h_i, w_i, c_i] (C = sum of c_i channels, in
  the order of `edges`' rows) -> float32 [batch, C * B]: channel c's B bins are
  columns c*B .. c*B+B-1 and sum to 1 (fractions of that map's h_i * w_i pixels).

  Args:
    edges: [C, B-1] inner edges, non-decreasing along each row.
    lookup_cells: cells of the lookup grid per channel (speed and table memory only;
      the result does not depend on it).
  """

  def __init__(self, edges, lookup_cells: int = DEFAULT_LOOKUP_CELLS, **kwargs):
    super().__init__(**kwargs)
    self.edges = np.asarray(edges, np.float32)
    if self.edges.ndim != 2 or np.any(np.diff(self.edges, axis=1) < 0):
      raise ValueError("edges must be [channels, bins - 1], non-decreasing per channel")
    self.lookup_cells = int(lookup_cells)
    self.num_channels, self.num_bins = self.edges.shape[0], self.edges.shape[1] + 1
    (self._lower, self._inverse_step, count_before, values,
     multiplicity) = _lookup_tables(self.edges, self.lookup_cells)
    self._count_before = count_before.reshape(-1)
    self._cell_values = values.reshape(-1, values.shape[-1])
    self._cell_multiplicity = multiplicity.reshape(-1, multiplicity.shape[-1])

  def _bins(self, flat, start: int, channels: int):
    """Bin index of each value of [batch, pixels, channels] (channels start..)."""
    cells = grid_cells(flat, self._lower[start:start + channels],
                       self._inverse_step[start:start + channels], self.lookup_cells)
    keys = cells + (ops.arange(channels, dtype="int32") + start) * self.lookup_cells
    bins = ops.take(self._count_before, keys)
    for m in range(self._cell_values.shape[-1]):
      above = ops.cast(flat >= ops.take(self._cell_values[:, m], keys), "int32")
      bins = bins + above * ops.take(self._cell_multiplicity[:, m], keys)
    return bins

  def call(self, response_maps):
    histograms, start = [], 0
    for flat, channels in _flatten_maps(response_maps):
      bins = self._bins(flat, start, channels)
      batch, pixels = ops.shape(flat)[0], ops.shape(flat)[1]
      row = ops.arange(batch, dtype="int32")[:, None, None] * (channels * self.num_bins)
      keys = bins + ops.arange(channels, dtype="int32") * self.num_bins + row
      # Scatter-add of ones counts the keys (bincount has no XLA kernel in TF).
      counts = ops.scatter(ops.reshape(keys, (-1, 1)),
                           ops.ones((batch * pixels * channels,), "float32"),
                           (batch * channels * self.num_bins,))
      histograms.append(ops.reshape(counts, (batch, channels * self.num_bins))
                        / ops.cast(pixels, "float32"))
      start += channels
    if start != self.num_channels:
      raise ValueError(f"maps have {start} channels, edges {self.num_channels}")
    return ops.concatenate(histograms, axis=-1)

  def compute_output_shape(self, input_shapes):
    return (input_shapes[0][0], self.num_channels * self.num_bins)

  def get_config(self):
    return {**super().get_config(), "edges": self.edges.tolist(),
            "lookup_cells": self.lookup_cells}
