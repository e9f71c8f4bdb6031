"""The command-line tools: absl flags -> config objects -> one library call.

Each module is the console script of the same name (setup.py: `sjft-<name>`), runnable
as `python -m sjft_tf.cli.<name>` too.
"""
