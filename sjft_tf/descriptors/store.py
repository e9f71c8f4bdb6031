"""Descriptor files: what the extraction stage writes and the selection stage reads.

A descriptor folder holds
  descriptor_metadata.json   bank config, bins, dimensions, storage, datasets and shards
  edges.npz                  edges [C, B-1], ranges lower/upper [C], channel_weights [C]
  <role>/<split>-00000-of-00004.npz   per input shard: ids [n] (str), labels [n] (int32),
                             descriptors [n, C*B] (float16, or uint8 with scales [n])
where role is "target" or "source". Every file is written to a temporary name and
renamed, so a present file is a complete file.
"""

import dataclasses
import os
import zipfile

import numpy as np

from sjft_tf import errors, files

METADATA_FILENAME = "descriptor_metadata.json"
EDGES_FILENAME = "edges.npz"
FORMAT_VERSION = 1
STORAGE_KINDS = ("float16", "uint8")


@dataclasses.dataclass
class Edges:
  """Fitted bins of a bank.

  Attributes:
    edges: float32 [C, B-1] inner bin edges per channel.
    lower, upper: float32 [C], each channel's response range on the fitting images.
    zero_floor: float32 [C], responses of smaller magnitude count as 0.
    channel_weights: float32 [C], 1 / (channels of the channel's layer).
  """
  edges: np.ndarray
  lower: np.ndarray
  upper: np.ndarray
  zero_floor: np.ndarray
  channel_weights: np.ndarray

  @property
  def num_bins(self) -> int:
    return self.edges.shape[1] + 1

  def dimension_weights(self) -> np.ndarray:
    """float32 [C*B]: each descriptor value's weight in the divergence."""
    return np.repeat(self.channel_weights, self.num_bins).astype(np.float32)


def save_edges(directory: str, edges: Edges) -> None:
  files.save_npz_atomic(os.path.join(directory, EDGES_FILENAME), **dataclasses.asdict(edges))


_REMEDY = "rerun sjft-descriptors with the same flags: it remakes a damaged file"


def load_edges(directory: str) -> Edges:
  data = files.load_npz(os.path.join(directory, EDGES_FILENAME), _REMEDY)
  return Edges(**{f.name: data[f.name] for f in dataclasses.fields(Edges)})


def encode(descriptors: np.ndarray, storage: str) -> dict[str, np.ndarray]:
  """Compact storage of float descriptors [n, D] (each row's channels sum to 1).

  float16 keeps about 3 significant digits. uint8 stores round(v / scale) with a
  per-row scale = max(v) / 255 (smaller: 1 byte a value; values under scale/2 become 0).
  """
  if storage == "float16":
    return {"descriptors": descriptors.astype(np.float16)}
  if storage == "uint8":
    scales = np.maximum(descriptors.max(axis=1), 1e-12).astype(np.float32) / 255.0
    quantised = np.round(descriptors / scales[:, None]).astype(np.uint8)
    return {"descriptors": quantised, "scales": scales}
  raise errors.InputError(f"unknown storage {storage!r} ({', '.join(STORAGE_KINDS)})")


def save_shard(path: str, ids, labels, descriptors: np.ndarray, storage: str) -> None:
  files.save_npz_atomic(path, ids=np.asarray(ids, dtype=str), labels=np.asarray(labels, np.int32),
                   **encode(descriptors, storage))


@dataclasses.dataclass
class DescriptorShard:
  ids: np.ndarray          # str [n]
  labels: np.ndarray       # int32 [n]
  descriptors: np.ndarray  # float32 [n, D]


def load_shard(path: str) -> DescriptorShard:
  """Reads a shard; descriptors come back as float32 whatever the storage.

  Raises ValueError naming the file when it is damaged.
  """
  data = files.load_npz(path, _REMEDY)
  descriptors = data["descriptors"].astype(np.float32)
  if "scales" in data:
    descriptors *= data["scales"][:, None]
  return DescriptorShard(data["ids"], data["labels"], descriptors)


def load_ids_labels(path: str) -> tuple[np.ndarray, np.ndarray]:
  """(ids, labels) of a shard, without reading its descriptors.

  Raises ValueError naming the file when it is damaged.
  """
  try:
    with np.load(path, allow_pickle=False) as data:
      return data["ids"], data["labels"]
  except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as error:
    raise errors.InputError(f"{path} is damaged ({type(error).__name__}: {error}); "
                            f"{_REMEDY}") from error


def shard_paths(directory: str, role: str) -> list[str]:
  """Descriptor shard files of a role ("target" or "source"), as the metadata lists them."""
  metadata = load_metadata(directory)
  return [os.path.join(directory, p) for entry in metadata["datasets"]
          if entry["role"] == role for p in entry["shards"]]


def load_all(directory: str, role: str, split: str | None = None) -> DescriptorShard:
  """Every descriptor of a role (and split), concatenated in metadata order."""
  metadata = load_metadata(directory)
  shards = [load_shard(os.path.join(directory, p)) for entry in metadata["datasets"]
            if entry["role"] == role and split in (None, entry["split"])
            for p in entry["shards"]]
  if not shards:
    raise errors.InputError(
        f"{directory}: no {role} descriptors{f' for split {split}' if split else ''}")
  return DescriptorShard(np.concatenate([s.ids for s in shards]),
                         np.concatenate([s.labels for s in shards]),
                         np.concatenate([s.descriptors for s in shards]))


def _spec_paths(metadata: dict, convert) -> dict:
  """metadata with each dataset entry's spec_dir passed through `convert`."""
  datasets = [{**entry, "spec_dir": convert(entry["spec_dir"])}
              for entry in metadata.get("datasets", [])]
  return {**metadata, "datasets": datasets} if "datasets" in metadata else metadata


def save_metadata(directory: str, metadata: dict) -> None:
  """Writes the metadata; spec folders relative to `directory` (a moved tree works)."""
  relative = _spec_paths(metadata, lambda p: files.relative_to(p, directory))
  files.write_json_atomic(os.path.join(directory, METADATA_FILENAME),
                          {"format_version": FORMAT_VERSION, **relative})


def load_metadata(directory: str) -> dict:
  """The metadata, with spec folders as paths usable from the current directory."""
  metadata = files.read_versioned_json(os.path.join(directory, METADATA_FILENAME),
                                       FORMAT_VERSION, "sjft-descriptors")
  return _spec_paths(metadata, lambda p: files.resolve(p, directory))
