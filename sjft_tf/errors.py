"""The one exception type of bad input.

`InputError` is what the library raises when a user can fix the cause: a file or folder
they named (or a stage should have made) that is absent, damaged or of another run; a
flag or config value out of range; a refused resume. Its message names the file, flag or
value and says what to do, in one line. The command-line tools print exactly these as
`<tool>: error: <message>` with exit status 2 (`cli/runner.py`); every other exception
(a bug of ours, of a dependency) keeps its traceback.

`InputError` is a ValueError and `MissingInputError` also a FileNotFoundError, so callers
that catch the built-in types keep working.
"""


class InputError(ValueError):
  """Bad input that the user can fix; the message names it and the remedy."""


class MissingInputError(InputError, FileNotFoundError):
  """An input file or folder is absent; the message names it and what makes it."""
