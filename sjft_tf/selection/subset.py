"""Writes the selected source images as a dataset of their own: TFRecord shards whose
labels are source-head labels (retained classes re-indexed contiguously) and a
dataset_spec.json, readable by sjft_tf.data.pipeline like any ingested dataset; each
shard has its record (size and SHA-1) beside it, as ingested shards do, so that a
damaged subset is found and written again."""

import math
import os

from absl import logging
import tensorflow as tf

from sjft_tf import errors, files, integrity
from sjft_tf.data import spec as spec_lib
from sjft_tf.data import tfrecord
from sjft_tf.data.ingest import shard_name


def _reusable(output_dir: str, fingerprint: str) -> spec_lib.DatasetSpec | None:
  """The subset in output_dir when it is of this selection and whole (its spec readable,
  every shard of its recorded size and SHA-1); None otherwise, a damaged one said by
  name (it is written again)."""
  if not os.path.exists(spec_lib.spec_path(output_dir)):
    return None
  try:
    existing = spec_lib.load_spec(output_dir)
  except ValueError as error:
    logging.warning("%s: written again (%s)", output_dir,
                    " ".join(str(error).split("; run")[0].split())[:300])
    return None
  if existing.metadata.get("selection_fingerprint") != fingerprint:
    return None
  try:
    damaged = existing.damaged_shards("train")
  except (FileNotFoundError, ValueError) as error:
    damaged = [" ".join(str(error).split())[:300]]
  if damaged:
    logging.warning("%s: written again (damaged: %s)", output_dir, ", ".join(damaged))
    return None
  return existing


def write_subset(source_spec_dir: str, splits: list[str], head_label_of: dict[str, int],
                 class_names: list[str], output_dir: str, name: str,
                 shard_size: int = 2048, metadata: dict | None = None) -> spec_lib.DatasetSpec:
  """Copies the examples whose id is in `head_label_of`, relabelled, in source order.

  Args:
    source_spec_dir: the ingested source dataset.
    splits: its splits the descriptors came from.
    head_label_of: example id -> source-head label.
    class_names: source-head label -> class name.
  Returns:
    The subset's spec (split "train"). A subset already in output_dir is reused only
    if it holds exactly these ids with these labels, copied from the same source
    images (a fingerprint in its metadata).
  """
  # Over 60 lines: 12 are the docstring; the copy resumes shard by shard and records
  # each shard's size and SHA-1 in the same loop.
  source = spec_lib.load_spec(source_spec_dir)
  fingerprint = files.fingerprint([sorted(head_label_of.items()),
                                   [source.split_fingerprint(s) for s in splits]])
  existing = _reusable(output_dir, fingerprint)
  if existing is not None:
    return existing
  os.makedirs(output_dir, exist_ok=True)
  num_shards = max(1, math.ceil(len(head_label_of) / shard_size))
  shards, counts = [], [0] * len(class_names)
  writer, written, tmp_path = None, 0, None

  def close():  # the shard, then its record (size and SHA-1), as ingest writes them
    writer.close()
    final = os.path.join(output_dir, shards[-1])
    os.replace(tmp_path, final)
    files.write_json_atomic(f"{final}.json", {"bytes": os.path.getsize(final),
                                              "sha1": integrity.sha1_file(final)})

  paths = [p for split in splits for p in source.shard_paths(split)]
  for raw in tf.data.TFRecordDataset(paths).as_numpy_iterator():
    example = tf.train.Example.FromString(raw)
    feature = example.features.feature
    example_id = feature[tfrecord.ID_KEY].bytes_list.value[0].decode()
    if example_id not in head_label_of:
      continue
    if written % shard_size == 0:
      if writer is not None:
        close()
      shards.append(shard_name("train", len(shards), num_shards))
      tmp_path = os.path.join(output_dir, shards[-1]) + f".tmp-{os.getpid()}"
      writer = tf.io.TFRecordWriter(tmp_path)
    label = head_label_of[example_id]
    feature[tfrecord.LABEL_KEY].int64_list.value[:] = [label]
    writer.write(example.SerializeToString(deterministic=True))
    counts[label] += 1
    written += 1
  if writer is not None:
    close()
  if written != len(head_label_of):
    raise errors.InputError(f"{source_spec_dir} {splits}: found {written} of the "
                            f"{len(head_label_of)} selected ids; the descriptors and the dataset "
                            f"disagree")
  subset = spec_lib.DatasetSpec(name, list(class_names),
                                {"train": spec_lib.SplitSpec(written, counts, shards)},
                                {**(metadata or {}), "selection_fingerprint": fingerprint},
                                os.path.abspath(output_dir))
  spec_lib.save_spec(subset)
  return subset
