"""The command line's split of errors: bad input in one line, a bug with its traceback."""

import subprocess
import sys
import textwrap

import pytest

from sjft_tf import errors

_TOOL = textwrap.dedent("""
    from absl import flags
    from sjft_tf import errors
    from sjft_tf.cli import runner

    KIND = {kind!r}

    def main(argv):
      del argv
      if KIND == "input":
        raise errors.InputError("/data/x.csv: no rows after the header")
      if KIND == "missing":
        raise errors.MissingInputError("no dataset_spec.json at /data/spec: run sjft-ingest first")
      raise ValueError("a bug of ours")

    runner.run(main, flags.FlagValues())
""")


def _run(kind):
  return subprocess.run([sys.executable, "-c", _TOOL.format(kind=kind), "tool"],
                        capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize("kind,message", [
    ("input", "/data/x.csv: no rows after the header"),
    ("missing", "no dataset_spec.json at /data/spec: run sjft-ingest first")])
def test_an_input_error_is_one_line_with_exit_2(kind, message):
  result = _run(kind)
  assert result.returncode == 2
  assert result.stderr.strip().splitlines()[-1] == f"-c: error: {message}"
  assert "Traceback" not in result.stderr


def test_any_other_error_keeps_its_traceback():
  result = _run("bug")
  assert result.returncode == 1
  assert "Traceback" in result.stderr and "ValueError: a bug of ours" in result.stderr
  assert ": error:" not in result.stderr


def test_the_input_errors_are_the_builtin_types_too():
  assert issubclass(errors.InputError, ValueError)
  assert issubclass(errors.MissingInputError, FileNotFoundError)
  assert issubclass(errors.MissingInputError, errors.InputError)
