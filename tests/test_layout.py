"""Package layout: the CLIs live in sjft_tf.cli, nothing installed shadows the standard
library or takes a generic top-level name, and serving code does not need ScaNN."""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _python(code: str, cwd) -> str:
  done = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True,
                        text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-3000:]
  return done.stdout.strip()


def test_evaluation_and_export_read_a_trained_run_without_selection_code(tmp_path):
  # Their command lines too (each tool keeps its own flags: one process imports both).
  loaded = _python(
      "import sys\nimport sjft_tf.export.serving, sjft_tf.evaluation.evaluate\n"
      "import sjft_tf.cli.export, sjft_tf.cli.evaluate\n"
      "print(sorted(m for m in sys.modules if m.split('.')[0] == 'scann' or m.startswith(("
      "'sjft_tf.selection', 'sjft_tf.training.train', 'sjft_tf.training.sampler'))))",
      tmp_path)
  assert loaded == "[]"


def test_no_top_level_tools_package_is_installed_and_select_is_the_stdlib(tmp_path):
  # Outside the checkout (cwd not the repository), as a user's environment sees it.
  found = _python("import importlib.util, select, sys\n"
                  "print(importlib.util.find_spec('tools') is None)\n"
                  "print(select.__file__.startswith(sys.base_prefix) or "
                  "select.__file__.endswith('.so'))", tmp_path)
  assert found.splitlines() == ["True", "True"]
  assert not os.path.exists(os.path.join(REPO, "tools", "__init__.py"))
  assert os.path.exists(os.path.join(REPO, "sjft_tf", "cli", "select.py"))
