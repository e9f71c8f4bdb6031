"""Records of whole outputs: every file of a finished output folder with its size and
SHA-1, written last; an output is reused only after its record is verified.

  integrity.write_record(folder)            # when everything in `folder` is written
  integrity.verify(folder, "rerun sjft-x")  # before reuse: ValueError naming the file

The record (`RECORD_FILENAME` in the folder, or a path of the caller's choosing) is the
last file written, atomically, so a folder with a record was complete when it was
written; verifying compares sizes first (free) and then hashes every recorded file
(about 1 GB/s a core: seconds for a run folder or a SavedModel). Files the record does
not list (added later, e.g. an evaluation beside a run's model) are not its business.
As TFDS' prepare checks its downloads by size and checksum.
"""

import hashlib
import os

from sjft_tf import errors, files

RECORD_FILENAME = "sjft_files.json"


def sha1_file(path: str) -> str:
  """SHA-1 (hex) of a file's bytes."""
  return files.hash_file_into(hashlib.sha1(), path).hexdigest()


def describe(path: str) -> dict:
  """{"bytes", "sha1"} of a file: its entry in a record."""
  return {"bytes": os.path.getsize(path), "sha1": sha1_file(path)}


def _listed(folder: str, record_path: str) -> list[str]:
  names = []
  for root, _, filenames in os.walk(folder):
    for name in filenames:
      path = os.path.join(root, name)
      if os.path.abspath(path) != os.path.abspath(record_path) and ".tmp" not in name:
        names.append(os.path.relpath(path, folder))
  return sorted(names)


def write_record(folder: str, record_path: str | None = None, names=None) -> str:
  """Records `names` (paths relative to folder; default every file under it) and
  returns the record's path (default folder/RECORD_FILENAME)."""
  record_path = record_path or os.path.join(folder, RECORD_FILENAME)
  names = _listed(folder, record_path) if names is None else sorted(names)
  files.write_json_atomic(record_path, {
      "files": {name: describe(os.path.join(folder, name)) for name in names}})
  return record_path


def damaged_names(folder: str, record_path: str | None = None) -> dict[str, str]:
  """{name relative to folder: why} for the files of the record that are missing or
  differ from it (size, then SHA-1), in name order; {} when the folder is as recorded.

  Raises:
    FileNotFoundError: the folder has no record (it was never finished).
    ValueError: the record itself is damaged, naming it.
  """
  record_path = record_path or os.path.join(folder, RECORD_FILENAME)
  if not os.path.exists(record_path):
    raise errors.MissingInputError(f"{record_path} is missing: {folder} was not finished")
  record = files.read_json(record_path)
  if not isinstance(record, dict) or not isinstance(record.get("files"), dict):
    raise errors.InputError(f"{record_path} is damaged (no file list)")
  problems = {}
  for name, expected in sorted(record["files"].items()):
    path = os.path.join(folder, name)
    if not os.path.isfile(path):
      problems[name] = "missing"
    elif os.path.getsize(path) != expected.get("bytes"):
      problems[name] = f"{os.path.getsize(path)} bytes, recorded {expected.get('bytes')}"
    elif sha1_file(path) != expected.get("sha1"):
      problems[name] = "its SHA-1 is not the recorded one"
  return problems


def damaged_files(folder: str, record_path: str | None = None) -> list[str]:
  """`damaged_names` as "path (why)" strings; [] when the folder is as recorded."""
  return [f"{os.path.join(folder, name)} ({why})"
          for name, why in damaged_names(folder, record_path).items()]


def verify(folder: str, remedy: str, record_path: str | None = None) -> None:
  """Raises ValueError naming the first damaged file (and `remedy`) unless the folder
  is as its record says; FileNotFoundError without a record."""
  try:
    problems = damaged_files(folder, record_path)
  except ValueError as error:
    raise errors.InputError(f"{error}" + (f"; {remedy}" if remedy else "")) from error
  if problems:
    more = f" and {len(problems) - 1} more" if len(problems) > 1 else ""
    raise errors.InputError(f"{problems[0]} is damaged{more}"
                            + (f": {remedy}" if remedy else ""))


def is_whole(folder: str, record_path: str | None = None) -> bool:
  """Whether the folder has a record and matches it."""
  try:
    return not damaged_files(folder, record_path)
  except (FileNotFoundError, ValueError):
    return False
