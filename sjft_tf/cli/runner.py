"""The command-line tools' entry point and in-process stage calls.

Each tool defines its flags on its own `FLAG_VALUES` (absl FlagValues), not on the
global FLAGS, so tools that chain stages (sjft-run, sjft-reproduce) run every stage's
`main` in their own process from the stage's flag file, as the stage's command line
would.

A bad input (a missing file or folder, a malformed CSV, a refused resume) raises
`errors.InputError` in the library with a message that names the file and the problem;
the tools print `<tool>: error: <message>` and exit 2. Any other exception is a bug (ours
or a dependency's) and keeps its traceback. `--verbosity=1` (absl) or SJFT_TRACEBACK=1
shows the traceback of an input error as well.
"""

import os
import sys
import time

from absl import app, flags, logging

from sjft_tf import errors

# A bad input, a refused resume, a bad flag or flag file (absl's flags.Error, e.g. a
# stage's flag file that cannot be opened), a usage error: one line, exit status 2.
USER_ERRORS = (errors.InputError, flags.Error, app.UsageError)


def _error(message: str) -> None:
  print(f"{os.path.basename(sys.argv[0])}: error: {' '.join(str(message).split())}",
        file=sys.stderr)
  sys.exit(2)


def run(main, values: flags.FlagValues) -> None:
  """absl's app.run(main) with the tool's flags in `values` (absl's own, e.g.
  --verbosity, stay global) and USER_ERRORS reported in one line."""

  def parse(argv):
    if any(a in ("--help", "-h", "--helpfull", "-?") for a in argv[1:]):
      print(sys.modules[main.__module__].__doc__)
      for name in sorted(values):
        print(f"  --{name}: {values[name].help} (default: {values[name].default_as_str})")
      sys.exit(0)
    try:
      return flags.FLAGS(values(argv, known_only=True))
    except flags.Error as error:
      _error(error)

  def guarded(argv):
    try:
      return main(argv)
    except USER_ERRORS as error:
      if os.environ.get("SJFT_TRACEBACK") or logging.get_verbosity() >= 1:
        raise
      _error(error)

  app.run(guarded, flags_parser=parse)


def parse_stage(module, flagfile: str, *flags_and_args: str) -> None:
  """Sets a tool's flags (module: an sjft_tf.cli module) from `flagfile` and then
  `flags_and_args`, as its command line would."""
  module.FLAG_VALUES.unparse_flags()
  module.FLAG_VALUES([module.__name__, f"--flagfile={flagfile}", *flags_and_args])


def run_stage(module, flagfile: str, *flags_and_args: str) -> float:
  """Runs a tool's `main` in this process with the flags `parse_stage` sets; returns
  its seconds."""
  parse_stage(module, flagfile, *flags_and_args)
  logging.info("stage %s: --flagfile=%s %s", module.__name__, flagfile,
               " ".join(flags_and_args))
  started = time.time()
  module.main([])
  return time.time() - started
