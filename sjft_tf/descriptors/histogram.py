"""Adaptive equal-mass histograms of filter responses (Ge & Yu 2017, section 3.1).

Edges are fitted on the TARGET training images in two streamed passes: pass one finds
each channel's min and max response, pass two counts responses in a fine grid of
`fine_bins` cells per channel; the B-1 inner edges are then placed on grid boundaries
so each of the B bins holds as close to 1/B of the responses as the grid allows.
Source images are histogrammed with the same edges.

The grids are uniform in *float order*, not in value: a float32's bits, read as an
integer and flipped for negatives (`order_keys`), order floats exactly as their values
do, and a cell is a run of consecutive keys. Cells are therefore about equally narrow
relative to the value at every magnitude (0.4% with 65536 cells over a range that
spans zero), which matters because filter responses crowd near zero.

Responses smaller in magnitude than a per-channel floor (`zero_floors`: 1e-4 of the
channel's largest magnitude on the fitting images) count as exactly 0, in fitting and
in binning. Below that, float32 convolutions differ from exact ones by rounding, and
bins drawn there would sort noise; flat image regions become one point mass at 0.

Binning is exact: bin k of channel c holds edges[c, k-1] <= x < edges[c, k] (values
below the first edge go to bin 0, at or above the last to bin B-1), the same as
np.histogram with those edges. Three counting formulations give the same counts
(`COUNTING_METHODS`; `counting_method` picks one per device):
  lookup:  a value's key selects a cell of a lookup grid; a table gives the number of
           edges in earlier cells, and the value is compared only with the few edges
           inside its own cell (integer keys make the cells exactly monotone, so this
           equals comparing with every edge); the bins are then counted by one
           scatter-add of ones. Fastest on a CPU; on a GPU thousands of values of one
           map add into the same few counters (contended atomics).
  compare: for each edge, the number of values >= it, a compare fused with a sum over
           pixels (no table, no scatter); bin counts are differences of neighbouring
           edges' numbers. B - 1 compares a value, a reduction XLA fuses on a GPU.
  onehot:  the lookup's bin index, then for each bin the number of values equal to it,
           summed over pixels (a one-hot of the bin index reduced, no scatter).
The compare and one-hot reductions run over chunks of edges or bins, so the compared
tensor stays under `MAX_COMPARE_ELEMENTS` values an image.
"""

import keras
import numpy as np
from keras import ops

from sjft_tf import errors

DEFAULT_FINE_BINS = 65536
MAX_LOOKUP_CELLS = 65536
LOOKUP_TABLE_BUDGET_BYTES = 64 * 2**20
DEFAULT_RELATIVE_ZERO_FLOOR = 1e-4
COUNTING_METHODS = ("lookup", "compare", "onehot")
MAX_COMPARE_ELEMENTS = 2**24
_LOW_BITS = 0x7FFFFFFF


def counting_method(device_kind: str) -> str:
  """The counting formulation for a device kind ("cpu", "gpu", "tpu"): the table lookup
  and scatter on a CPU (fastest there: BUILD_NOTES.md), the fused compare-and-sum on
  an accelerator, whose scatter-add contends on a few counters per map."""
  return "lookup" if device_kind == "cpu" else "compare"


def default_device_kind() -> str:
  """"gpu", "tpu" or "cpu": where the current Keras backend places computations."""
  backend = keras.backend.backend()
  if backend == "jax":
    import jax  # pylint: disable=g-import-not-at-top
    return jax.default_backend()
  if backend == "tensorflow":
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    return "gpu" if tf.config.list_logical_devices("GPU") else "cpu"
  if backend == "torch":
    import torch  # pylint: disable=g-import-not-at-top
    return "gpu" if torch.cuda.is_available() else "cpu"
  return "cpu"


def _chunks(total: int, values_per_step: int | None) -> list[tuple[int, int]]:
  """[start, stop) ranges of at most MAX_COMPARE_ELEMENTS // values_per_step of total."""
  step = total if values_per_step is None else max(
      1, min(total, MAX_COMPARE_ELEMENTS // max(values_per_step, 1)))
  return [(first, min(first + step, total)) for first in range(0, total, step)]


def zero_floors(lower: np.ndarray, upper: np.ndarray,
                relative: float = DEFAULT_RELATIVE_ZERO_FLOOR) -> np.ndarray:
  """float32 [C]: `relative` times each channel's largest magnitude in [lower, upper]."""
  return (relative * np.maximum(np.abs(lower), np.abs(upper))).astype(np.float32)


def snap_to_zero(values, zero_floor):
  """values [..., C] with |values| < zero_floor [C] replaced by 0."""
  values = ops.cast(values, "float32")
  return ops.where(ops.abs(values) < zero_floor, ops.zeros_like(values), values)


def order_keys(values):
  """int32 keys ordered as the float32 values are (-0.0 and 0.0 share key 0)."""
  bits = ops.view(ops.cast(values, "float32"), "int32")
  keys = ops.where(bits < 0, ops.bitwise_xor(bits, _LOW_BITS), bits)
  return ops.where(keys == -1, 0, keys)  # -1 is the key of -0.0


def _numpy_keys(values: np.ndarray) -> np.ndarray:
  """order_keys in NumPy (the same integer arithmetic), as int64."""
  bits = np.asarray(values, np.float32).view(np.int32).astype(np.int64)
  keys = np.where(bits < 0, bits ^ _LOW_BITS, bits)
  return np.where(keys == -1, 0, keys)


def _key_to_float(keys: np.ndarray) -> np.ndarray:
  """Inverse of order_keys: int keys -> the float32 values they order."""
  keys = np.asarray(keys, np.int64)
  bits = np.where(keys < 0, keys ^ _LOW_BITS, keys).astype(np.int32)
  return bits.view(np.float32)


def key_grid(lower: np.ndarray, upper: np.ndarray, num_cells: int):
  """Per-channel grids of at most num_cells cells over [lower, upper] in key order.

  Returns:
    (base, shift): int32 [C] each; a value's cell is (key >> shift) - base.
  """
  low, high = _numpy_keys(lower), _numpy_keys(upper)
  shift = np.zeros_like(low)
  while np.any((high >> shift) - (low >> shift) >= num_cells):
    shift = np.where((high >> shift) - (low >> shift) >= num_cells, shift + 1, shift)
  return (low >> shift).astype(np.int32), shift.astype(np.int32)


def grid_cells(keys, base, shift, num_cells: int):
  """Cell of each key on per-channel grids, clipped to [0, num_cells - 1].

  Args:
    keys: int32 [..., channels] from order_keys.
    base, shift: int32 [channels] from key_grid.
  Returns:
    int32, the shape of `keys`.
  """
  return ops.clip(ops.right_shift(keys, shift) - base, 0, num_cells - 1)


def _flatten_maps(response_maps):
  """[batch, h, w, c] maps -> list of ([batch, h*w, c] float32, c)."""
  flat = []
  for response in response_maps:
    shape = ops.shape(response)
    height, width = response.shape[1:3]
    # Static pixel counts where the maps' sizes are known (the chunks of `_chunks`).
    flat_shape = ((-1, height * width, shape[-1]) if height is not None and width is not None
                  else (shape[0], -1, shape[-1]))
    flat.append((ops.reshape(ops.cast(response, "float32"), flat_shape), int(shape[-1])))
  return flat


def batch_ranges(response_maps):
  """Per-channel min and max over a batch: (float32 [C], float32 [C]), maps concatenated."""
  lows, highs = [], []
  for flat, _ in _flatten_maps(response_maps):
    lows.append(ops.min(flat, axis=(0, 1)))
    highs.append(ops.max(flat, axis=(0, 1)))
  return ops.concatenate(lows, 0), ops.concatenate(highs, 0)


def batch_fine_counts(response_maps, lower, upper, fine_bins: int = DEFAULT_FINE_BINS,
                      zero_floor=None):
  """Counts of a batch's responses in the fine grid of each channel: int32 [C, fine_bins].

  Args:
    response_maps: list of [batch, h, w, c_i]; C = sum of c_i.
    lower, upper: numpy float32 [C], the channels' ranges (pass one).
    zero_floor: numpy float32 [C] (see snap_to_zero); None: zero_floors(lower, upper).
  """
  lower, upper = np.asarray(lower), np.asarray(upper)
  if zero_floor is None:
    zero_floor = zero_floors(lower, upper)
  base, shift = key_grid(lower, upper, fine_bins)
  counts, start = [], 0
  for flat, channels in _flatten_maps(response_maps):
    snapped = snap_to_zero(flat, zero_floor[start:start + channels])
    cells = grid_cells(order_keys(snapped), base[start:start + channels],
                       shift[start:start + channels], fine_bins)
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
    fine_counts: [C, F] counts from `batch_fine_counts` with the same lower, upper.
    lower, upper: [C] the channels' ranges.
    num_bins: B.
  Returns:
    float32 [C, B-1], non-decreasing along each row. The mass below an edge is exactly
    the fine counts below its boundary. Where one fine cell holds more than 1/B of the
    mass (a point mass), neighbouring edges coincide (empty bins).
  """
  fine_counts = np.asarray(fine_counts, np.float64)
  fine_bins = fine_counts.shape[1]
  base, shift = key_grid(np.asarray(lower), np.asarray(upper), fine_bins)
  cumulative = np.cumsum(fine_counts, axis=1)
  targets = cumulative[:, -1:] * (np.arange(1, num_bins) / num_bins)[None, :]
  edges = np.empty((fine_counts.shape[0], num_bins - 1), np.float32)
  for c in range(fine_counts.shape[0]):
    # Boundary j (1..F-1), the start of cell j, has cumulative[c, j-1] responses below.
    after = np.clip(np.searchsorted(cumulative[c], targets[c]), 0, fine_bins - 1)
    before = np.clip(after - 1, 0, fine_bins - 1)
    take_before = (np.abs(cumulative[c, before] - targets[c])
                   <= np.abs(cumulative[c, after] - targets[c]))
    boundary = np.clip(np.where(take_before, before, after) + 1, 1, fine_bins - 1)
    edges[c] = _key_to_float((np.int64(base[c]) + boundary) << np.int64(shift[c]))
  return np.maximum.accumulate(edges, axis=1)


def auto_lookup_cells(num_channels: int) -> int:
  """Lookup cells per channel: the most (a power of two, up to MAX_LOOKUP_CELLS) whose
  tables fit LOOKUP_TABLE_BUDGET_BYTES with one edge per cell (12 bytes a cell).

  More cells mean fewer edges per cell to compare with: on 224 px MobileNet responses
  4096 cells needed 13 comparisons a value and 65536 cells one (2.2x faster).
  """
  cells = MAX_LOOKUP_CELLS
  while cells > 256 and num_channels * cells * 12 > LOOKUP_TABLE_BUDGET_BYTES:
    cells //= 2
  return cells


def _lookup_tables(edges: np.ndarray, lookup_cells: int):
  """The lookup grid over each channel's [first edge, last edge] and its tables."""
  channels = edges.shape[0]
  base, shift = key_grid(edges[:, 0], edges[:, -1], lookup_cells)
  edge_keys = ops.convert_to_numpy(order_keys(edges))
  # The edges' cells, computed by the same keras.ops functions as the values' cells.
  edge_cells = ops.convert_to_numpy(grid_cells(
      ops.convert_to_tensor(edge_keys.T), base, shift, lookup_cells)).T
  count_before = np.zeros((channels, lookup_cells), np.int32)
  cell_edges: dict[tuple[int, int], list] = {}
  for c in range(channels):
    per_cell = np.bincount(edge_cells[c], minlength=lookup_cells)
    count_before[c] = np.concatenate([[0], np.cumsum(per_cell)[:-1]])
    for cell, key in zip(edge_cells[c], edge_keys[c]):
      cell_edges.setdefault((c, int(cell)), []).append(key)
  distinct = {k: np.unique(np.asarray(v, np.int32), return_counts=True)
              for k, v in cell_edges.items()}
  width = max(len(keys) for keys, _ in distinct.values())
  keys = np.full((channels, lookup_cells, width), np.iinfo(np.int32).max, np.int32)
  multiplicity = np.zeros((channels, lookup_cells, width), np.int32)
  for (c, cell), (cell_keys, counts) in distinct.items():
    keys[c, cell, :len(cell_keys)] = cell_keys
    multiplicity[c, cell, :len(counts)] = counts
  return base, shift, count_before, keys, multiplicity


@keras.saving.register_keras_serializable(package="sjft_tf")
class HistogramLayer(keras.layers.Layer):
  """Per-channel normalised histograms with fixed bin edges.

  Call: a list of response maps [batch, h_i, w_i, c_i] (C = sum of c_i channels, in
  the order of `edges`' rows) -> float32 [batch, C * B]: channel c's B bins are
  columns c*B .. c*B+B-1 and sum to 1 (fractions of that map's h_i * w_i pixels).

  Args:
    edges: [C, B-1] inner edges, non-decreasing along each row.
    zero_floor: [C], responses with smaller magnitude count as 0 (None: no floor).
    lookup_cells: cells of the lookup grid per channel, 0 for `auto_lookup_cells`
      (speed and table memory only; the result does not depend on it).
    method: the counting formulation (module docstring: "lookup", "compare",
      "onehot"), or "auto": `counting_method` of the device the layer is built on
      (a saved "auto" layer decides again where it is loaded). Speed only: every
      formulation gives the same counts.
  """

  def __init__(self, edges, zero_floor=None, lookup_cells: int = 0, method: str = "auto",
               **kwargs):
    super().__init__(**kwargs)
    if method != "auto" and method not in COUNTING_METHODS:
      raise errors.InputError(f"unknown counting method {method!r}; known: auto, "
                              f"{', '.join(COUNTING_METHODS)}")
    self.method = method
    self.counting = counting_method(default_device_kind()) if method == "auto" else method
    self.edges = np.asarray(edges, np.float32)
    if self.edges.ndim != 2 or np.any(np.diff(self.edges, axis=1) < 0):
      raise errors.InputError("edges must be [channels, bins - 1], non-decreasing per channel")
    self.zero_floor = (np.zeros(self.edges.shape[0], np.float32) if zero_floor is None
                       else np.asarray(zero_floor, np.float32))
    self.lookup_cells = int(lookup_cells) or auto_lookup_cells(self.edges.shape[0])
    self.num_channels, self.num_bins = self.edges.shape[0], self.edges.shape[1] + 1
    (self._base, self._shift, count_before, keys,
     multiplicity) = _lookup_tables(self.edges, self.lookup_cells)
    self._edge_keys = _numpy_keys(self.edges).astype(np.int32)  # [C, B-1]
    self._count_before = count_before.reshape(-1)
    self._cell_keys = keys.reshape(-1, keys.shape[-1])
    self._cell_multiplicity = multiplicity.reshape(-1, multiplicity.shape[-1])

  def _bins(self, flat, start: int, channels: int):
    """Bin index of each value of [batch, pixels, channels] (channels start..)."""
    value_keys = order_keys(snap_to_zero(flat, self.zero_floor[start:start + channels]))
    cells = grid_cells(value_keys, self._base[start:start + channels],
                       self._shift[start:start + channels], self.lookup_cells)
    table_index = cells + (ops.arange(channels, dtype="int32") + start) * self.lookup_cells
    bins = ops.take(self._count_before, table_index)
    for m in range(self._cell_keys.shape[-1]):
      above = ops.cast(value_keys >= ops.take(self._cell_keys[:, m], table_index), "int32")
      bins = bins + above * ops.take(self._cell_multiplicity[:, m], table_index)
    return bins

  def _scatter_counts(self, flat, start: int, channels: int):
    """float32 [batch, channels * B] counts: lookup bins, one scatter-add of ones."""
    bins = self._bins(flat, start, channels)
    batch, pixels = ops.shape(flat)[0], ops.shape(flat)[1]
    row = ops.arange(batch, dtype="int32")[:, None, None] * (channels * self.num_bins)
    keys = bins + ops.arange(channels, dtype="int32") * self.num_bins + row
    # Scatter-add of ones counts the keys (bincount has no XLA kernel in TF).
    counts = ops.scatter(ops.reshape(keys, (-1, 1)),
                         ops.ones((batch * pixels * channels,), "float32"),
                         (batch * channels * self.num_bins,))
    return ops.reshape(counts, (batch, channels * self.num_bins))

  def _compare_counts(self, flat, start: int, channels: int):
    """float32 [batch, channels * B] counts: values >= each edge, then differences."""
    # Compared as order keys, integers: exact where a float compare is not (a CPU that
    # flushes subnormals to zero calls 0 >= 1e-40 true; edges can be subnormal).
    value_keys = order_keys(snap_to_zero(flat, self.zero_floor[start:start + channels]))
    edge_keys = self._edge_keys[start:start + channels]
    per_image = None if flat.shape[1] is None else flat.shape[1] * channels
    at_or_above = ops.concatenate([  # [batch, channels, B - 1]
        ops.sum(ops.cast(value_keys[..., None] >= edge_keys[:, first:stop], "float32"),
                axis=1)
        for first, stop in _chunks(self.num_bins - 1, per_image)], axis=-1)
    pixels = ops.cast(ops.shape(flat)[1], "float32")
    counts = ops.concatenate([pixels - at_or_above[..., :1],
                              at_or_above[..., :-1] - at_or_above[..., 1:],
                              at_or_above[..., -1:]], axis=-1)
    return ops.reshape(counts, (ops.shape(flat)[0], channels * self.num_bins))

  def _onehot_counts(self, flat, start: int, channels: int):
    """float32 [batch, channels * B] counts: lookup bins, each bin's equals summed."""
    bins = self._bins(flat, start, channels)[..., None]
    per_image = None if flat.shape[1] is None else flat.shape[1] * channels
    counts = ops.concatenate([  # [batch, channels, B]
        ops.sum(ops.cast(bins == ops.arange(first, stop, dtype="int32"), "float32"), axis=1)
        for first, stop in _chunks(self.num_bins, per_image)], axis=-1)
    return ops.reshape(counts, (ops.shape(flat)[0], channels * self.num_bins))

  def call(self, response_maps):
    count = {"lookup": self._scatter_counts, "compare": self._compare_counts,
             "onehot": self._onehot_counts}[self.counting]
    histograms, start = [], 0
    for flat, channels in _flatten_maps(response_maps):
      histograms.append(count(flat, start, channels) / ops.cast(ops.shape(flat)[1],
                                                                "float32"))
      start += channels
    if start != self.num_channels:
      raise errors.InputError(f"maps have {start} channels, edges {self.num_channels}")
    return ops.concatenate(histograms, axis=-1)

  def compute_output_shape(self, input_shapes):
    return (input_shapes[0][0], self.num_channels * self.num_bins)

  def get_config(self):
    return {**super().get_config(), "edges": self.edges.tolist(),
            "zero_floor": self.zero_floor.tolist(), "lookup_cells": self.lookup_cells,
            "method": self.method}
