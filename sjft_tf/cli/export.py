r"""sjft-export: the trained target classifier as a versioned SavedModel for TF Serving.

  sjft-export --run_dir=runs/demo/train --export_dir=runs/demo/export
  tensorflow_model_server --rest_api_port=8501 --model_name=sjft \
      --model_base_path=$PWD/runs/demo/export
Writes <export_dir>/<next version>/; signatures serving_default (encoded JPEG/PNG
bytes) and predict_images (float pixels); see README.
"""

import os

from absl import flags

from sjft_tf import outputs
from sjft_tf.export import serving
from sjft_tf.cli import runner

FLAG_VALUES = flags.FlagValues()
_RUN_DIR = flags.DEFINE_string("run_dir", None, "A finished sjft-train run folder (holds model.keras).", required=True, flag_values=FLAG_VALUES)
EXPORT_DIR = flags.DEFINE_string("export_dir", None, "TF Serving's model base path; versions go in numbered folders.", required=True, flag_values=FLAG_VALUES)
_TOP_K = flags.DEFINE_integer("top_k", 5, "Classes returned per image.", lower_bound=1, flag_values=FLAG_VALUES)
_VERSION = flags.DEFINE_integer("version", None, "Version to write (default: the next); an existing one is refused.", flag_values=FLAG_VALUES)


def main(argv):
  del argv
  trained = outputs.TrainedRun.read(_RUN_DIR.value)
  path = serving.export(trained.load_model(), trained.target_class_names, EXPORT_DIR.value,
                        trained.resize_size, trained.crop_size, _TOP_K.value, _VERSION.value,
                        provenance={"run_dir": os.path.abspath(trained.run_dir),
                                    "model": trained.model_fingerprint()})
  print(f"exported {len(trained.target_class_names)} classes, {trained.resize_size} px "
        f"resize, {trained.crop_size} px centre crop to {path}")


def run():
  runner.run(main, FLAG_VALUES)


if __name__ == "__main__":
  run()
