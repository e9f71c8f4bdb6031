"""Lists a labelled image collection as records to ingest, split by split.

Three inputs, one result (`ListedSource`):
  * a folder tree `ROOT/<split>/<class>/*` or `ROOT/<class>/*` (then split by fractions);
  * a CSV manifest with columns `path,label[,split]`;
  * a TFDS dataset by name, read from `data_dir` (a prepared dataset works offline).

Example ids derive from what names an image (its path relative to the root or the CSV,
or TFDS's own `tfds_id`), never from listing order, so they survive reordering, reruns
and added files. Folder and CSV records are ordered by a hash of their id, which mixes
classes across shards and does not depend on the order the file system lists them in.
"""

import csv
import dataclasses
import hashlib
import math
import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from sjft_tf import errors
from sjft_tf.data.images import ImageError

KNOWN_SPLIT_NAMES = ("train", "val", "validation", "test", "pool")


@dataclasses.dataclass(frozen=True)
class ImageRecord:
  """One image to ingest.

  Attributes:
    example_id: stable id, unique within the dataset (a relative path or TFDS id).
    class_name: the image's class.
    path: file to read, or "" when `data` holds the bytes.
    data: the encoded bytes, for sources that are not files (TFDS).
  """
  example_id: str
  class_name: str
  path: str = ""
  data: bytes | None = None

  def read_bytes(self) -> bytes:
    """Returns the encoded image; an unreadable path raises ImageError."""
    if self.data is not None:
      return self.data
    try:
      with open(self.path, "rb") as f:
        return f.read()
    except OSError as e:
      raise ImageError(f"unreadable path ({e.strerror or e})") from e


@dataclasses.dataclass
class SplitPlan:
  """The records of one split, read a shard at a time.

  Attributes:
    num_records: records listed (before bad images are skipped).
    fingerprint: hash of what was listed; a resumed run checks it against its shards.
    read_range: (start, stop) -> the records in that range, in ingest order.
  """
  num_records: int
  fingerprint: str
  read_range: Callable[[int, int], Iterable[ImageRecord]]


@dataclasses.dataclass
class ListedSource:
  """A collection ready to ingest: classes in label order and a plan per split."""
  class_names: list[str]
  splits: dict[str, SplitPlan]
  metadata: dict[str, Any] = dataclasses.field(default_factory=dict)


def _id_hash(example_id: str) -> str:
  return hashlib.sha1(example_id.encode()).hexdigest()


def _plan_from_records(records: Sequence[ImageRecord]) -> SplitPlan:
  ordered = sorted(records, key=lambda r: (_id_hash(r.example_id), r.example_id))
  digest = hashlib.sha1()
  for record in ordered:
    digest.update(f"{record.example_id}\t{record.class_name}\n".encode())
  return SplitPlan(len(ordered), digest.hexdigest(), lambda a, b: ordered[a:b])


def parse_split_fractions(text: str) -> dict[str, float]:
  """Parses "train=0.8,val=0.2" into {"train": 0.8, "val": 0.2} (must sum to 1)."""
  fractions = {}
  for item in filter(None, (part.strip() for part in text.split(","))):
    name, sep, value = item.partition("=")
    if not sep:
      raise errors.InputError(f"split fraction {item!r} is not of the form name=fraction")
    try:
      fractions[name.strip()] = float(value)
    except ValueError:
      raise errors.InputError(
          f"split fraction {item!r}: {value.strip()!r} is not a number") from None
    if not 0.0 <= fractions[name.strip()] <= 1.0:
      raise errors.InputError(f"split fraction {item!r}: a fraction must lie in [0, 1]")
  if not fractions or not math.isclose(sum(fractions.values()), 1.0, abs_tol=1e-6):
    raise errors.InputError(f"split fractions {text!r} must be non-empty and sum to 1")
  return fractions


def parse_split_counts(text: str) -> dict[str, int | None]:
  """Parses "train=30,test=rest" into {"train": 30, "test": None} (None: the rest)."""
  counts: dict[str, int | None] = {}
  for item in filter(None, (part.strip() for part in text.split(","))):
    name, sep, value = item.partition("=")
    if not sep:
      raise errors.InputError(f"split count {item!r} is not of the form name=count or name=rest")
    try:
      counts[name.strip()] = None if value.strip() == "rest" else int(value)
    except ValueError:
      raise errors.InputError(f"split count {item!r}: {value.strip()!r} is neither a whole number "
                              f"nor 'rest'") from None
    if counts[name.strip()] is not None and counts[name.strip()] < 0:
      raise errors.InputError(f"split count {item!r}: a count must be 0 or more")
  if not counts or None in list(counts.values())[:-1]:
    raise errors.InputError(f"split counts {text!r}: give name=count items; only the last may "
                            f"be name=rest")
  return counts


def _split_each_class(records: Sequence[ImageRecord], names: list[str],
                      stops) -> dict[str, list[ImageRecord]]:
  """Per class, records ordered by the hash of their id are cut at stops(count)."""
  by_class: dict[str, list[ImageRecord]] = {}
  for record in records:
    by_class.setdefault(record.class_name, []).append(record)
  result: dict[str, list[ImageRecord]] = {name: [] for name in names}
  for class_name, class_records in by_class.items():
    ordered = sorted(class_records, key=lambda r: _id_hash(r.example_id))
    start = 0
    for name, stop in zip(names, stops(class_name, len(ordered))):
      result[name].extend(ordered[start:stop])
      start = stop
  return result


def assign_splits(records: Sequence[ImageRecord],
                  fractions: dict[str, float]) -> dict[str, list[ImageRecord]]:
  """Splits each class by the given fractions, by hash of id (stable, stratified).

  Per class, records are ordered by the hash of their id; the first
  round(fraction * count) go to the first split, and so on; the last split takes the
  rest, so every record lands in exactly one split.
  """
  cumulative = np.cumsum(list(fractions.values()))
  return _split_each_class(
      records, list(fractions),
      lambda _, n: [round(c * n) for c in cumulative[:-1]] + [n])


def assign_split_counts(records: Sequence[ImageRecord],
                        counts: dict[str, int | None]) -> dict[str, list[ImageRecord]]:
  """Splits each class by fixed image counts (e.g. 30 a class to train, the rest to
  test, as in Caltech-256's protocol), by hash of id like `assign_splits`.

  Records beyond the counts are left out unless the last split is "rest" (None).
  Raises:
    ValueError: a class has fewer images than the fixed counts add up to.
  """
  fixed = np.cumsum([c for c in counts.values() if c is not None]).tolist()

  def stops(class_name, n):
    if fixed and n < fixed[-1]:
      raise errors.InputError(f"class {class_name} has {n} images, fewer than the {fixed[-1]} "
                              f"the split counts {counts} need")
    return fixed + ([n] if None in counts.values() else [])

  return _split_each_class(records, list(counts), stops)


def _list_files(directory: str, hidden: list[str] | None = None) -> list[str]:
  """Files under `directory`, recursively, skipping hidden files and folders (their
  paths are appended to `hidden` when given)."""
  found = []
  for dirpath, dirnames, filenames in os.walk(directory, followlinks=True):
    if hidden is not None:
      hidden.extend(os.path.join(dirpath, d) for d in sorted(dirnames) if d.startswith("."))
      hidden.extend(os.path.join(dirpath, f) for f in sorted(filenames) if f.startswith("."))
    dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
    found.extend(os.path.join(dirpath, f) for f in sorted(filenames)
                 if not f.startswith("."))
  return found


def _subdirectories(directory: str) -> list[str]:
  return sorted(d for d in os.listdir(directory)
                if not d.startswith(".") and os.path.isdir(os.path.join(directory, d)))


def _relative_id(path: str, root: str) -> str:
  return os.path.relpath(path, root).replace(os.sep, "/")


def _filtered_classes(found: Iterable[str], include: Sequence[str] | None,
                      where: str) -> list[str]:
  names = sorted(set(found))
  if include:
    missing = sorted(set(include) - set(names))
    if missing:
      raise errors.InputError(f"{where}: requested classes not found: {missing}")
    names = sorted(set(include))
  return names


def _divide(records: list[ImageRecord], split_fractions: str,
            split_counts: str) -> dict[str, list[ImageRecord]]:
  """Unsplit records -> splits, by fractions or by per-class counts (not both)."""
  if split_fractions and split_counts:
    raise errors.InputError("give split fractions or split counts, not both")
  if split_fractions:
    return assign_splits(records, parse_split_fractions(split_fractions))
  if split_counts:
    return assign_split_counts(records, parse_split_counts(split_counts))
  return {"train": records}


def list_folder(root: str, layout: str = "auto", split_fractions: str = "",
                classes: Sequence[str] | None = None,
                split_counts: str = "", splits: Sequence[str] | None = None) -> ListedSource:
  """Lists `ROOT/<split>/<class>/*` or `ROOT/<class>/*`.

  Args:
    root: the folder.
    layout: "split_class", "class", or "auto" (split_class when every subfolder of
      root is one of KNOWN_SPLIT_NAMES).
    split_fractions: for the "class" layout, e.g. "train=0.8,val=0.2"; empty puts
      everything in "train".
    classes: keep only these class folders (None keeps all).
    split_counts: instead of fractions, images per class, e.g. "train=30,test=rest".
    splits: with the split_class layout, list only these split folders (None: all);
      other folders beside them (e.g. Oxford-IIIT Pet's `splits/` lists) are ignored.
  Raises:
    FileNotFoundError: root does not exist.
    ValueError: an empty class folder, no classes, or an unknown layout.
  """
  # Over 60 lines: 16 are the docstring; each layout check raises its own named error.
  if not os.path.isdir(root):
    raise errors.MissingInputError(f"input root {root} does not exist or is not a folder")
  top = _subdirectories(root)
  if not top:
    raise errors.InputError(f"{root}: no class or split folders inside")
  if splits:
    missing = sorted(set(splits) - set(top))
    if missing:
      raise errors.InputError(f"{root}: no split folder {', '.join(missing)}")
    top = [d for d in top if d in splits]
  if layout == "auto":
    layout = "split_class" if all(d in KNOWN_SPLIT_NAMES for d in top) else "class"
  if layout == "split_class":
    if split_fractions or split_counts:
      raise errors.InputError(f"{root} is already divided into split folders {top}: split "
                              f"fractions or counts would be ignored; drop them, or list a "
                              f"folder of class folders")
    split_dirs = {split: os.path.join(root, split) for split in top}
  elif layout == "class":
    split_dirs = {"": root}
  else:
    raise errors.InputError(f"unknown folder layout {layout!r} (auto, split_class, class)")

  class_dirs = {split: _subdirectories(d) for split, d in split_dirs.items()}
  class_names = _filtered_classes(
      (c for names in class_dirs.values() for c in names), classes, root)
  records_by_split: dict[str, list[ImageRecord]] = {}
  hidden: list[str] = []
  for split, split_dir in split_dirs.items():
    records = []
    for class_name in class_names:
      if class_name not in class_dirs[split]:
        continue
      class_dir = os.path.join(split_dir, class_name)
      files = _list_files(class_dir, hidden)
      if not files:
        raise errors.InputError(f"empty class: {class_dir} holds no files")
      records.extend(ImageRecord(_relative_id(f, root), class_name, path=f) for f in files)
    records_by_split[split] = records

  if layout == "class":
    records_by_split = _divide(records_by_split.pop(""), split_fractions, split_counts)
  return ListedSource(class_names,
                      {s: _plan_from_records(r) for s, r in records_by_split.items()},
                      {"input": {"kind": "folder", "root": os.path.abspath(root),
                                 "layout": layout,
                                 "ignored_hidden": [_relative_id(h, root) for h in hidden]}})


def list_csv(csv_path: str, split_fractions: str = "",
             classes: Sequence[str] | None = None, split_counts: str = "") -> ListedSource:
  """Lists a CSV manifest with a header `path,label[,split]`.

  Relative paths are taken from the CSV's folder; the example id is the path relative
  to that folder. Without a split column every row is "train", unless
  `split_fractions` or `split_counts` divide them.
  Raises:
    FileNotFoundError: the CSV does not exist.
    ValueError: a missing column, a duplicate path, or an empty row.
  """
  if not os.path.isfile(csv_path):
    raise errors.MissingInputError(f"CSV manifest {csv_path} does not exist")
  base = os.path.dirname(os.path.abspath(csv_path))
  rows: list[tuple[str, str, str]] = []
  with open(csv_path, newline="") as f:
    reader = csv.DictReader(f)
    columns = set(reader.fieldnames or [])
    if not {"path", "label"} <= columns:
      raise errors.InputError(f"{csv_path}: header must name the columns path,label[,split]; "
                              f"found {reader.fieldnames}")
    seen = set()
    for line_number, row in enumerate(reader, start=2):
      path, label = (row.get("path") or "").strip(), (row.get("label") or "").strip()
      if not path or not label:
        raise errors.InputError(f"{csv_path}:{line_number}: empty path or label")
      full = path if os.path.isabs(path) else os.path.join(base, path)
      example_id = _relative_id(full, base) if not os.path.isabs(path) else path
      if example_id in seen:
        raise errors.InputError(f"{csv_path}:{line_number}: duplicate path {path}")
      seen.add(example_id)
      rows.append((example_id, label, (row.get("split") or "").strip()))
  if not rows:
    raise errors.InputError(f"{csv_path}: no rows after the header: nothing to ingest")
  class_names = _filtered_classes((label for _, label, _ in rows), classes, csv_path)
  keep = set(class_names)
  records_by_split: dict[str, list[ImageRecord]] = {}
  for example_id, label, split in rows:
    if label in keep:
      path = example_id if os.path.isabs(example_id) else os.path.join(base, example_id)
      records_by_split.setdefault(split, []).append(ImageRecord(example_id, label, path))
  if "" in records_by_split:
    if len(records_by_split) > 1:
      raise errors.InputError(f"{csv_path}: some rows have a split and some do not")
    records_by_split = _divide(records_by_split.pop(""), split_fractions, split_counts)
  return ListedSource(class_names,
                      {s: _plan_from_records(r) for s, r in records_by_split.items()},
                      {"input": {"kind": "csv", "path": os.path.abspath(csv_path)}})


def parse_split_mapping(text: str) -> dict[str, str]:
  """Parses "train,val=validation" into {"train": "train", "val": "validation"}."""
  mapping = {}
  for item in filter(None, (part.strip() for part in text.split(","))):
    name, sep, source_split = item.partition("=")
    mapping[name.strip()] = source_split.strip() if sep else name.strip()
  if not mapping:
    raise errors.InputError("no splits given")
  return mapping


def list_tfds(name: str, splits: str, data_dir: str | None = None,
              image_key: str = "image", label_key: str = "label",
              download: bool = False) -> ListedSource:
  """Lists a TFDS dataset; images stay encoded (TFDS's decoder is skipped).

  Args:
    name: TFDS name, optionally with config and version ("oxford_flowers102:2.1.1").
    splits: output split names, each optionally mapped to a TFDS split expression:
      "train,val=validation,test".
    data_dir: where the prepared dataset lives (TFDS's default when None).
    image_key, label_key: feature names of the image and its ClassLabel.
    download: download and prepare first (needs the internet); otherwise the dataset
      must already be prepared in data_dir.
  """
  import tensorflow_datasets as tfds  # heavy: only for this input

  builder = tfds.builder(name, data_dir=data_dir)
  if download:
    builder.download_and_prepare()
  label_feature = builder.info.features[label_key]
  class_names = list(label_feature.names)
  plans = {}
  for out_split, tfds_split in parse_split_mapping(splits).items():
    num_records = builder.info.splits[tfds_split].num_examples
    fingerprint = hashlib.sha1(
        f"{builder.info.full_name}|{tfds_split}|{num_records}".encode()).hexdigest()

    def read_range(start: int, stop: int, tfds_split=tfds_split):
      dataset = builder.as_dataset(
          split=tfds_split, shuffle_files=False,
          decoders={image_key: tfds.decode.SkipDecoding()},
          read_config=tfds.ReadConfig(add_tfds_id=True))
      for example in tfds.as_numpy(dataset.skip(start).take(stop - start)):
        yield ImageRecord(example["tfds_id"].decode(),
                          class_names[int(example[label_key])],
                          data=bytes(example[image_key]))

    plans[out_split] = SplitPlan(num_records, fingerprint, read_range)
  return ListedSource(class_names, plans,
                      {"input": {"kind": "tfds", "name": builder.info.full_name,
                                 "data_dir": builder.data_dir}})
