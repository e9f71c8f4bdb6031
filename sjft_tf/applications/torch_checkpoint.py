"""Reads a PyTorch state dict file into numpy arrays, without PyTorch.

Two serialisations exist. The legacy one (torch < 1.6, and `_use_new_zipfile_serialization
=False`) is a stream of pickles: a magic number, the protocol version, system info, the
state dict (whose tensors refer to storages by key), the list of storage keys, then each
storage's bytes, in that order, behind an int64 element count. The zip one (torch >= 1.6)
holds the same state-dict pickle as `data.pkl` and each storage as a file `data/<key>`.
Both are read here; only the classes a state dict needs are unpickled (no code runs).
"""

import collections
import io
import pickle
import struct
import zipfile

import numpy as np

from sjft_tf import errors

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class _StorageType:
  """Stands in for torch.<X>Storage: only its numpy dtype is needed."""

  def __init__(self, name: str):
    self.dtype = np.dtype(_STORAGE_DTYPES[name])


def _rebuild_tensor(storage, offset, shape, stride, *unused):
  """torch._utils._rebuild_tensor_v2 for numpy: a view of `storage` ([elements]) with
  torch's element strides, copied to a C-ordered array."""
  del unused  # requires_grad, backward hooks (and metadata in newer versions)
  itemsize = storage.dtype.itemsize
  if not shape:
    return np.array(storage[offset])
  view = np.lib.stride_tricks.as_strided(
      storage[offset:], shape=tuple(shape), strides=tuple(s * itemsize for s in stride))
  return np.ascontiguousarray(view)


class _StateDictUnpickler(pickle.Unpickler):
  """Unpickles a state dict; storages come from `load_storage(key, dtype)`."""

  def __init__(self, stream, load_storage):
    super().__init__(stream)
    self._load_storage = load_storage

  def find_class(self, module, name):
    if (module, name) == ("collections", "OrderedDict"):
      return collections.OrderedDict
    if (module, name) in (("torch._utils", "_rebuild_tensor_v2"),
                          ("torch._utils", "_rebuild_tensor")):
      return _rebuild_deferred
    if module == "torch" and name in _STORAGE_DTYPES:
      return _StorageType(name)
    raise pickle.UnpicklingError(f"a state dict does not hold {module}.{name}")

  def persistent_load(self, saved_id):
    # ("storage", storage type, key, location, elements[, view metadata])
    if not isinstance(saved_id, tuple) or saved_id[0] != "storage":
      raise pickle.UnpicklingError(f"unknown persistent id {saved_id!r}")
    return self._load_storage(str(saved_id[2]), saved_id[1].dtype)


def _read_legacy(stream) -> dict:
  magic = pickle.load(stream)
  if magic != _LEGACY_MAGIC:
    raise errors.InputError("not a PyTorch file (wrong magic number)")
  pickle.load(stream)  # protocol version
  system = pickle.load(stream)
  if not system.get("little_endian", True):
    raise errors.InputError("big-endian PyTorch files are not supported")
  wanted = {}  # key -> (dtype, array filled below)

  def load_storage(key, dtype):
    if key not in wanted:
      wanted[key] = [dtype, None]
    return _Deferred(wanted, key)

  state = _StateDictUnpickler(stream, load_storage).load()
  keys = pickle.load(stream)
  for key in keys:
    (count,) = struct.unpack("<q", stream.read(8))
    dtype = wanted[key][0] if key in wanted else np.uint8
    data = stream.read(count * np.dtype(dtype).itemsize)
    if len(data) != count * np.dtype(dtype).itemsize:
      raise errors.InputError(f"storage {key} is truncated")
    wanted.setdefault(key, [dtype, None])[1] = np.frombuffer(data, dtype)
  return {name: value.resolve() if isinstance(value, _DeferredTensor) else value
          for name, value in state.items()}


class _Deferred:
  """A storage whose bytes come after the state-dict pickle (legacy format)."""

  def __init__(self, table: dict, key: str):
    self.table, self.key = table, key


class _DeferredTensor:
  """A tensor of a _Deferred storage, rebuilt once the storages are read."""

  def __init__(self, storage: _Deferred, args):
    self.storage, self.args = storage, args

  def resolve(self) -> np.ndarray:
    data = self.storage.table[self.storage.key][1]
    if data is None:
      raise errors.InputError(f"storage {self.storage.key} missing from the file")
    return _rebuild_tensor(data, *self.args)


def _rebuild_deferred(storage, *args):
  """The unpickler's torch._utils._rebuild_tensor_v2: now, or once the storage is read."""
  if isinstance(storage, _Deferred):
    return _DeferredTensor(storage, args)
  return _rebuild_tensor(storage, *args)


def _read_zip(path: str) -> dict:
  with zipfile.ZipFile(path) as archive:
    names = archive.namelist()
    pickle_name = next(n for n in names if n.endswith("/data.pkl") or n == "data.pkl")
    prefix = pickle_name[:-len("data.pkl")]

    def load_storage(key, dtype):
      return np.frombuffer(archive.read(f"{prefix}data/{key}"), dtype)

    return _StateDictUnpickler(io.BytesIO(archive.read(pickle_name)), load_storage).load()


def load_state_dict(path: str) -> dict[str, np.ndarray]:
  """{parameter name: array} of a PyTorch state dict file (either serialisation).

  Raises:
    ValueError: naming `path`, when it is not a readable state dict.
  """
  try:
    if zipfile.is_zipfile(path):
      state = _read_zip(path)
    else:
      with open(path, "rb") as stream:
        state = _read_legacy(stream)
  except (pickle.UnpicklingError, EOFError, struct.error, KeyError, StopIteration,
          ValueError) as error:
    raise errors.InputError(f"{path}: not a readable PyTorch state dict ({error})") from error
  return {name: np.asarray(value) for name, value in state.items()}
