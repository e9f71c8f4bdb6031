"""Unpacking dataset archives (tar.gz) into a cache folder, once, resumably.

Used for the real datasets of the project's `../shared` folder (Oxford Flowers 102,
Tiny ImageNet) and for any tarball a user has: members are extracted to a temporary
folder and moved into place, and a stamp file marks an extraction complete and lists
each extracted file's size: a rerun extracts again when one is missing or truncated.
"""

import hashlib
import json
import os
import shutil
import tarfile
from collections.abc import Callable

from absl import logging

from sjft_tf import errors, files

SHARED_ENV = "SJFT_SHARED_DIR"


# Where extracted archives go, relative to the working directory: the presets' ingest
# flags read their images from there (.cache/shared/<archive's folder>), so unpacking and
# reading agree from any folder and for an installed (non-editable) package.
DEFAULT_CACHE_DIR = os.path.join(".cache", "shared")


def _checkout() -> str | None:
  """The source checkout this package runs from (an editable install), else None."""
  checkout = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  return checkout if os.path.exists(os.path.join(checkout, "setup.py")) else None


def shared_dir() -> str | None:
  """The shared data folder: $SJFT_SHARED_DIR, else ../shared beside the working
  directory, else beside the source checkout.

  Returns None when absent (a user's clone has no ../shared).
  """
  candidates = [os.environ.get(SHARED_ENV), os.path.join(os.getcwd(), "..", "shared")]
  if _checkout():
    candidates.append(os.path.join(_checkout(), "..", "shared"))
  for candidate in filter(None, candidates):
    if os.path.isdir(os.path.join(candidate, "data")):
      return os.path.abspath(candidate)
  return None


def default_cache_dir() -> str:
  """Where extracted archives go: DEFAULT_CACHE_DIR under the working directory."""
  return os.path.abspath(DEFAULT_CACHE_DIR)


def unpack_target(item: str, cache_dir: str) -> tuple[str, str]:
  """(archive path relative to the shared data folder, folder to extract it into) of an
  `--unpack` item: "ARCHIVE" (into cache_dir) or "ARCHIVE=FOLDER" (into
  cache_dir/FOLDER, e.g. to keep a larger copy of a dataset apart)."""
  archive, _, folder = item.partition("=")
  if folder and (os.path.isabs(folder) or ".." in folder.split(os.sep)):
    raise errors.InputError(f"--unpack {item}: FOLDER must be a relative path inside the cache")
  return archive, os.path.join(cache_dir, folder) if folder else cache_dir


def extract(archive: str, cache_dir: str, include: Callable[[str], bool] | None = None,
            tag: str = "all") -> str:
  """Extracts `archive` (members passing `include`) into `cache_dir`; idempotent.

  Args:
    archive: a .tar or .tar.gz file.
    cache_dir: extraction root; the archive's own top folder lands inside it.
    include: member name -> keep it; None keeps every member.
    tag: names this selection of members, so different selections get their own stamp.
  Returns:
    cache_dir.
  """
  stamp = os.path.join(cache_dir, ".extracted-" + hashlib.sha1(
      f"{os.path.abspath(archive)}|{tag}".encode()).hexdigest()[:16])
  if _extracted_whole(stamp, cache_dir):
    return cache_dir
  os.makedirs(cache_dir, exist_ok=True)
  tmp = f"{stamp}.tmp-{os.getpid()}"
  shutil.rmtree(tmp, ignore_errors=True)
  with tarfile.open(archive) as tar:
    members = [m for m in tar.getmembers() if include is None or include(m.name)]
    tar.extractall(tmp, members=members, filter="data")
  sizes = {}
  for dirpath, _, filenames in os.walk(tmp):
    target_dir = os.path.join(cache_dir, os.path.relpath(dirpath, tmp))
    os.makedirs(target_dir, exist_ok=True)
    for name in filenames:
      relative = os.path.relpath(os.path.join(target_dir, name), cache_dir)
      sizes[relative] = os.path.getsize(os.path.join(dirpath, name))
      os.replace(os.path.join(dirpath, name), os.path.join(target_dir, name))
  shutil.rmtree(tmp)
  files.write_json_atomic(stamp, {"archive": archive, "sizes": sizes})
  return cache_dir


def _extracted_whole(stamp: str, cache_dir: str) -> bool:
  """Whether the files an extraction's stamp lists are all in cache_dir at their
  extracted sizes (a file since removed or truncated: extracted again, named in a
  warning). A stamp of an earlier version (the archive's path alone) is trusted."""
  try:
    with open(stamp) as f:
      text = f.read()
  except FileNotFoundError:
    return False
  try:
    sizes = json.loads(text)["sizes"]
  except (ValueError, KeyError, TypeError):
    return bool(text.strip()) and not text.lstrip().startswith("{")
  for relative, size in sizes.items():
    path = os.path.join(cache_dir, relative)
    if not os.path.isfile(path) or os.path.getsize(path) != size:
      logging.warning("%s is missing or not its extracted size: extracting again", path)
      return False
  return True
