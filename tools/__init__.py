"""The command-line tools (console scripts of setup.py) and benchmark scripts.

TensorFlow's C++ start-up chatter (CUDA probes, oneDNN notices) is hidden by default;
set TF_CPP_MIN_LOG_LEVEL=0 to see it.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
