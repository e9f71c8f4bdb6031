"""The command-line tools' entry point: user errors as one line, not a traceback.

A bad input (a missing file or folder, a malformed CSV, a refused resume) raises
FileNotFoundError, NotADirectoryError or ValueError in the library with a message that
names the file and the problem; the tools print `<tool>: error: <message>` and exit 2.
`--verbosity=1` (absl) or SJFT_TRACEBACK=1 shows the traceback as well.
"""

import os
import sys

from absl import app, logging

USER_ERRORS = (FileNotFoundError, NotADirectoryError, ValueError)


def run(main) -> None:
  """absl's app.run(main), with USER_ERRORS reported in one line."""

  def guarded(argv):
    try:
      return main(argv)
    except USER_ERRORS as error:
      if os.environ.get("SJFT_TRACEBACK") or logging.get_verbosity() >= 1:
        raise
      message = " ".join(str(error).split())
      print(f"{os.path.basename(sys.argv[0])}: error: {message}", file=sys.stderr)
      sys.exit(2)

  app.run(guarded)
