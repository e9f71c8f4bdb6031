"""The target classifier as a versioned SavedModel for TF Serving.

`EXPORT_DIR/<version>/` (TF Serving's layout; versions 1, 2, ... never overwritten) holds
a SavedModel with two signatures, both returning
  probabilities        float32 [batch, classes]  softmax of the target head
  top_k_indices        int32   [batch, k]        most probable classes first
  top_k_probabilities  float32 [batch, k]
  top_k_classes        string  [batch, k]        their class names
serving_default (input `images`, string [batch]): encoded JPEG or PNG bytes (grayscale
  and alpha accepted: converted to RGB, alpha dropped, as at ingestion), decoded and
  preprocessed in the graph exactly as evaluation's centre crop (resize to a square,
  centre crop).
predict_images (input `images`, float32 [batch, crop, crop, 3]): RGB in [0, 255],
  already decoded and cropped.
An empty or undecodable image fails its request with an error naming the image's
position and the problem; the server and later requests are unaffected.
Only the target head is exported: the source head and the retrieval are training aids.
"""

import dataclasses
import os
import re
import shutil

import keras
import tensorflow as tf

from sjft_tf import bounds, errors, files, integrity, outputs
from sjft_tf.data import pipeline
from sjft_tf.training.model import TARGET_HEAD

@dataclasses.dataclass
class ExportConfig:
  """What `export_run` exports, and where.

  Attributes:
    run_dir: a finished sjft-train run folder (holds model.keras).
    export_dir: TF Serving's model base path; versions go in numbered folders.
    top_k: classes returned per image.
    version: the version to write (None: the next); an existing one is refused.
  """
  run_dir: str
  export_dir: str
  top_k: int = bounds.field(5, lower=1)
  version: int | None = bounds.field(None, lower=1)

  def __post_init__(self):
    bounds.check(self)


SERVING_SIGNATURE = "serving_default"
PIXELS_SIGNATURE = "predict_images"
INPUT_NAME = "images"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def decode_for_serving(encoded: tf.Tensor, position: tf.Tensor, resize_size: int,
                       crop_size: int) -> tf.Tensor:
  """One request image: bytes -> float32 [crop, crop, 3], as evaluation reads it.

  Raises (at run time) InvalidArgumentError for empty bytes or bytes that are neither
  JPEG nor PNG, naming the image's position in the request.
  """
  is_jpeg = tf.io.is_jpeg(encoded)
  is_png = tf.equal(tf.strings.substr(encoded, 0, len(_PNG_SIGNATURE)), _PNG_SIGNATURE)
  checks = [
      tf.debugging.Assert(tf.strings.length(encoded) > 0,
                          ["request image", position, "is empty (0 bytes)"]),
      tf.debugging.Assert(is_jpeg | is_png,
                          ["request image", position, "is neither JPEG nor PNG; it starts "
                           "with", tf.strings.substr(encoded, 0, 8)]),
  ]
  with tf.control_dependencies(checks):
    shape = tf.cond(is_jpeg, lambda: tf.cast(tf.image.extract_jpeg_shape(encoded), tf.int64),
                    lambda: tf.zeros([3], tf.int64))
    image = pipeline.decode_resized(encoded, tf.where(is_jpeg, "jpeg", "png"), shape[0],
                                    shape[1], resize_size)
  return pipeline.centre_crop(image, crop_size)


def _classifier(model: keras.Model) -> keras.Model:
  """images -> target-head logits (drops the source head)."""
  outputs = model.output
  logits = outputs[TARGET_HEAD] if isinstance(outputs, dict) else outputs
  return keras.Model(model.input, logits, name="target_classifier")


PROVENANCE_PATH = os.path.join("assets.extra", "sjft_export.json")
# The version's file record (integrity.py), written last, beside the provenance.
RECORD_PATH = os.path.join("assets.extra", integrity.RECORD_FILENAME)


def latest_provenance(export_dir: str) -> dict | None:
  """The provenance of the highest version in export_dir (None: none, or none
  recorded, or a damaged record: that version is no current export)."""
  path = os.path.join(export_dir, str(next_version(export_dir) - 1), PROVENANCE_PATH)
  if not os.path.exists(path):
    return None
  try:
    provenance = files.read_json(path)
  except ValueError:
    return None
  return provenance if isinstance(provenance, dict) else None


def verify_version(version_dir: str) -> None:
  """Checks an exported version as TF Serving would use it: its files against the
  record written with them (versions of earlier releases have none), then the
  SavedModel loaded and predict_images run on one black image.

  Raises:
    ValueError: one line naming the damaged file or what failed.
  """
  record = os.path.join(version_dir, RECORD_PATH)
  remedy = f"delete {version_dir} and export again"
  if os.path.exists(record):
    integrity.verify(version_dir, remedy, record)
  try:
    loaded = tf.saved_model.load(version_dir)
    signature = loaded.signatures[PIXELS_SIGNATURE]
    size = signature.structured_input_signature[1][INPUT_NAME].shape[1]
    result = signature(**{INPUT_NAME: tf.zeros([1, size, size, 3])})
    probabilities = result["probabilities"].numpy()
  except (OSError, ValueError, KeyError, tf.errors.OpError) as error:
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
    raise errors.InputError(f"{version_dir} does not load as a SavedModel "
                            f"({type(error).__name__}: {first_line}): {remedy}") from error
  if not (probabilities.shape[0] == 1 and abs(float(probabilities.sum()) - 1) < 1e-3):
    raise errors.InputError(f"{version_dir}: predict_images returned no distribution: {remedy}")


def next_version(export_dir: str) -> int:
  """1 + the highest integer version folder in export_dir (1 when there is none)."""
  if not os.path.isdir(export_dir):
    return 1
  versions = [int(n) for n in os.listdir(export_dir) if re.fullmatch(r"\d+", n)]
  return max(versions, default=0) + 1


def export(model: keras.Model, class_names, export_dir: str, resize_size: int,
           crop_size: int, top_k: int = 5, version: int | None = None,
           provenance: dict | None = None) -> str:
  """Writes the target classifier to export_dir/<version>/ and returns that folder.

  Args:
    model: a model from build_joint_model (any with a `target` output, or one output).
    class_names: target class names, label = index.
    resize_size, crop_size: evaluation's sizes (the images' square resize, the crop).
    top_k: classes returned per image (at most the number of classes).
    version: the version to write (default: the next one); an existing one is refused.
    provenance: written to <version>/assets.extra/sjft_export.json (TF Serving ignores
      it), e.g. the fingerprint of the model file, to tell whether a version is current.
  """
  classifier = _classifier(model)
  classes = len(class_names)
  if classifier.output.shape[-1] != classes:
    raise errors.InputError(f"{classes} class names for a head of {classifier.output.shape[-1]}")
  top_k = min(top_k, classes)
  version = version or next_version(export_dir)
  final = os.path.join(export_dir, str(version))
  if os.path.exists(final):
    raise FileExistsError(f"{final} exists: versions are never overwritten")
  names = tf.constant(list(class_names))

  def outputs(pixels):
    probabilities = tf.nn.softmax(tf.cast(classifier(pixels, training=False), tf.float32))
    top = tf.math.top_k(probabilities, k=top_k)
    return {"probabilities": probabilities, "top_k_indices": top.indices,
            "top_k_probabilities": top.values,
            "top_k_classes": tf.gather(names, top.indices)}

  def serve_encoded(images):
    positions = tf.range(tf.size(images, out_type=tf.int64))
    pixels = tf.map_fn(
        lambda args: decode_for_serving(args[0], args[1], resize_size, crop_size),
        (images, positions),
        fn_output_signature=tf.TensorSpec([crop_size, crop_size, 3], tf.float32))
    return outputs(pixels)

  archive = keras.export.ExportArchive()
  archive.track(classifier)
  archive.add_endpoint(SERVING_SIGNATURE, serve_encoded,
                       [tf.TensorSpec([None], tf.string, name=INPUT_NAME)])
  archive.add_endpoint(PIXELS_SIGNATURE, outputs,
                       [tf.TensorSpec([None, crop_size, crop_size, 3], tf.float32,
                                      name=INPUT_NAME)])
  os.makedirs(export_dir, exist_ok=True)
  temporary = os.path.join(export_dir, f".tmp.{version}.{os.getpid()}")
  shutil.rmtree(temporary, ignore_errors=True)
  archive.write_out(temporary, verbose=False)
  if provenance is not None:
    files.write_json_atomic(os.path.join(temporary, PROVENANCE_PATH), provenance)
  integrity.write_record(temporary, os.path.join(temporary, RECORD_PATH))
  verify_version(temporary)  # what was written loads and answers, before it is served
  os.rename(temporary, final)  # TF Serving watches export_dir: a version appears whole
  return final


def export_run(config: ExportConfig, trained: outputs.TrainedRun | None = None) -> str:
  """Exports a finished run's target classifier (`export`) with its provenance (the
  run folder and the model file's fingerprint); returns the version folder.
  `trained`: config.run_dir already read (its model is then hashed once)."""
  trained = trained or outputs.TrainedRun.read(config.run_dir)
  return export(trained.load_model(), trained.target_class_names, config.export_dir,
                trained.resize_size, trained.crop_size, config.top_k, config.version,
                provenance={"run_dir": os.path.abspath(trained.run_dir),
                            "model": trained.model_fingerprint()})


def current_export(config: ExportConfig) -> tuple[str, str]:
  """The highest version of config.export_dir when it is this run's model and whole;
  else a new export. A damaged highest version of this model is replaced (moved aside,
  written again under its number, then deleted): TF Serving serves the highest.

  Returns:
    (the version folder, what happened: "reused", "exported" or "replaced <why>").
  """
  trained = outputs.TrainedRun.read(config.run_dir)
  latest = latest_provenance(config.export_dir) or {}
  version_dir = os.path.join(config.export_dir, str(next_version(config.export_dir) - 1))
  record = os.path.join(version_dir, PROVENANCE_PATH)
  if not latest and os.path.exists(record):  # whose model it holds is unknown
    return export_run(config, trained), (f"exported (a new version: {record} is damaged, "
                                         f"so {version_dir} cannot be taken for this model)")
  if latest.get("model") != trained.model_fingerprint():
    return export_run(config, trained), "exported"
  try:
    verify_version(version_dir)
    return version_dir, "reused"
  except ValueError as error:
    damaged = f"{version_dir}.damaged.{os.getpid()}"
    os.rename(version_dir, damaged)
    try:
      path = export_run(dataclasses.replace(config, version=int(os.path.basename(
          version_dir))), trained)
    except BaseException:
      os.rename(damaged, version_dir)
      raise
    shutil.rmtree(damaged, ignore_errors=True)
    return path, f"replaced ({error})"
