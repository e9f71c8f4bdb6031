r"""sjft-export: the trained target classifier as a versioned SavedModel for TF Serving.

  sjft-export --run_dir=runs/demo/train --export_dir=runs/demo/export
  tensorflow_model_server --rest_api_port=8501 --model_name=sjft \
      --model_base_path=$PWD/runs/demo/export
Writes <export_dir>/<next version>/; signatures serving_default (encoded JPEG/PNG
bytes) and predict_images (float pixels); see README.
"""

from absl import flags

from sjft_tf import outputs
from sjft_tf.export import serving
from sjft_tf.cli import config_flags, runner

FLAG_VALUES = flags.FlagValues()
# The fields of ExportConfig are flags of their names.
config_from_flags = config_flags.define(FLAG_VALUES, serving.ExportConfig,
                                        required=("run_dir", "export_dir"))


def main(argv):
  del argv
  config = config_from_flags()
  path = serving.export_run(config)
  trained = outputs.TrainedRun.read(config.run_dir)
  print(f"exported {len(trained.target_class_names)} classes, {trained.resize_size} px "
        f"resize, {trained.crop_size} px centre crop to {path}")


def run():
  runner.run(main, FLAG_VALUES)


if __name__ == "__main__":
  run()
