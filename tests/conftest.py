"""Shared fixtures: quiet TensorFlow, the ../shared data (skipped when absent)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

from sjft_tf.data import archives  # noqa: E402


@pytest.fixture(scope="session")
def shared_data_dir() -> str:
  """../shared/data, or the test is skipped (a user's clone has no ../shared)."""
  root = archives.shared_dir()
  if root is None:
    pytest.skip(f"no shared data: ../shared/data is absent and ${archives.SHARED_ENV} unset")
  return os.path.join(root, "data")


@pytest.fixture(scope="session")
def test_cache_dir() -> str:
  """An ignored folder of the checkout for archives the tests unpack."""
  return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".cache",
                      "test-shared")


# The longest files first: `make test` runs the suite on 2 processes (pytest-xdist,
# --dist loadfile --no-loadscope-reorder, which keeps this order instead of putting
# files with many tests first), and a long file left for last would run alone.
_LONGEST_FIRST = ("test_run.py", "test_robustness.py", "test_beam.py", "test_reproduce.py",
                  "test_precision.py", "test_training.py", "test_export.py",
                  "test_snippets.py", "test_remakes.py", "test_recipes.py")


def pytest_collection_modifyitems(items):
  def rank(item):
    name = os.path.basename(str(item.fspath))
    return _LONGEST_FIRST.index(name) if name in _LONGEST_FIRST else len(_LONGEST_FIRST)
  items.sort(key=rank)
