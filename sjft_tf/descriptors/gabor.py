"""The linear filter bank of Ge & Yu 2017: Gabor filters, 4 scales x 6 orientations,
real and imaginary parts (48 filters), applied to the grayscale image.

The paper publishes no kernel size, wavelengths or sigma; ours (`GaborParams`) are:
  * scales as an image pyramid: scale s filters the image average-pooled 2^s times
    with the same kernel, so the effective wavelengths are 4, 8, 16 and 32 px at full
    resolution (fine texture up to about 1/7 of a 224 px image) for the cost of one
    small kernel (a 32 px wavelength directly would need a ~100 px kernel);
  * wavelength 4 px, sigma = 0.56 * wavelength (a one-octave bandwidth, the usual
    choice for V1-like banks), aspect ratio gamma 0.5 (elongated along the stripes);
  * 11 x 11 kernels: +-2.2 sigma, 97% of the Gaussian envelope;
  * 6 orientations, 0 to 150 degrees in 30 degree steps;
  * real parts made zero-mean, so flat regions respond 0 and the bank measures
    texture rather than brightness (imaginary parts are odd, already zero-mean).
Kernels are those of OpenCV's cv2.getGaborKernel (same formula and orientation), which
the reference implementation of the tests uses.
"""

import dataclasses
import math

import keras
import numpy as np
from keras import ops

from sjft_tf import bounds, errors

# ITU-R BT.601 luma, as cv2.cvtColor(..., COLOR_RGB2GRAY).
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


@dataclasses.dataclass(frozen=True)
class GaborParams:
  """Parameters of the Gabor bank (defaults justified in the module docstring).

  Attributes:
    num_scales: pyramid levels; level s is the image average-pooled 2^s times.
    num_orientations: orientations evenly spaced over 180 degrees.
    kernel_size: side of the square kernels, pixels (odd).
    wavelength: wavelength of the cosine factor at every level, pixels.
    sigma_per_wavelength: Gaussian sigma / wavelength.
    gamma: spatial aspect ratio of the Gaussian.
  """
  num_scales: int = bounds.field(4, lower=1)
  num_orientations: int = bounds.field(6, lower=1)
  kernel_size: int = bounds.field(11, lower=1)
  wavelength: float = bounds.field(4.0, lower=1e-3)
  sigma_per_wavelength: float = bounds.field(0.56, lower=1e-3)
  gamma: float = bounds.field(0.5, lower=1e-3)

  def __post_init__(self):
    bounds.check(self)


def gabor_kernel(size: int, sigma: float, theta: float, wavelength: float, gamma: float,
                 psi: float) -> np.ndarray:
  """cv2.getGaborKernel((size, size), sigma, theta, wavelength, gamma, psi), float64."""
  half = size // 2
  y, x = np.mgrid[-half:half + 1, -half:half + 1].astype(np.float64)
  x_theta = x * math.cos(theta) + y * math.sin(theta)
  y_theta = -x * math.sin(theta) + y * math.cos(theta)
  envelope = np.exp(-0.5 * (x_theta ** 2 / sigma ** 2 + y_theta ** 2 * gamma ** 2 / sigma ** 2))
  kernel = envelope * np.cos(2 * math.pi * x_theta / wavelength + psi)
  return kernel[::-1, ::-1]  # OpenCV stores kernel(ymax - y, xmax - x)


def gabor_kernels(params: GaborParams) -> np.ndarray:
  """The bank's kernels: float32 [size, size, 1, 2 * orientations].

  Channel 2i is the real part at orientation i * 180 / orientations degrees (made
  zero-mean), channel 2i + 1 the imaginary part (psi = -pi/2).
  """
  sigma = params.sigma_per_wavelength * params.wavelength
  kernels = []
  for i in range(params.num_orientations):
    theta = math.pi * i / params.num_orientations
    real = gabor_kernel(params.kernel_size, sigma, theta, params.wavelength, params.gamma, 0.0)
    imaginary = gabor_kernel(params.kernel_size, sigma, theta, params.wavelength,
                             params.gamma, -math.pi / 2)
    kernels += [real - real.mean(), imaginary]
  return np.stack(kernels, -1)[:, :, None, :].astype(np.float32)


def to_gray(images):
  """float [batch, h, w, 3] RGB in [0, 255] -> float32 [batch, h, w, 1] in [0, 1]."""
  weights = ops.convert_to_tensor(np.asarray(LUMA_WEIGHTS, np.float32) / 255.0)
  return ops.sum(ops.cast(images, "float32") * weights, axis=-1, keepdims=True)


@keras.saving.register_keras_serializable(package="sjft_tf")
class GaborBank(keras.layers.Layer):
  """Gabor filter bank on a grayscale pyramid (Ge & Yu 2017's linear bank).

  Call: float [batch, h, w, 3] RGB in [0, 255] -> list of num_scales response maps;
  map s is [batch, h // 2^s, w // 2^s, 2 * orientations] (borders reflected without
  repeating the edge pixel, as cv2.filter2D's default; each pyramid step drops an odd
  last row or column). The smallest level must exceed kernel_size // 2 pixels.
  """

  def __init__(self, num_scales: int = 4, num_orientations: int = 6, kernel_size: int = 11,
               wavelength: float = 4.0, sigma_per_wavelength: float = 0.56,
               gamma: float = 0.5, **kwargs):
    super().__init__(**kwargs)
    self.params = GaborParams(num_scales, num_orientations, kernel_size, wavelength,
                              sigma_per_wavelength, gamma)
    self._kernels = gabor_kernels(self.params)

  def channel_groups(self) -> list[tuple[str, int]]:
    """(layer name, channels) of the descriptor's layers: the whole bank is one."""
    return [("gabor", self.params.num_scales * 2 * self.params.num_orientations)]

  def min_image_size(self) -> int:
    """The smallest image side the pyramid accepts, pixels."""
    return (self.params.kernel_size // 2 + 1) * 2 ** (self.params.num_scales - 1)

  def call(self, images):
    known = [side for side in tuple(images.shape)[1:3] if side is not None]
    if known and min(known) < self.min_image_size():
      raise errors.InputError(
          f"GaborBank: {min(known)}-px images are too small for {self.params.num_scales} "
          f"pyramid levels of a {self.params.kernel_size}-px kernel; the bank needs "
          f"{self.min_image_size()} px or more (resize larger, or use fewer scales)")
    level = to_gray(images)
    responses = []
    for scale in range(self.params.num_scales):
      if scale:
        level = ops.average_pool(level, pool_size=2, strides=2, padding="valid")
      half = self.params.kernel_size // 2
      padded = ops.pad(level, [[0, 0], [half, half], [half, half], [0, 0]], mode="reflect")
      responses.append(ops.conv(padded, self._kernels, strides=1, padding="valid"))
    return responses

  def compute_output_shape(self, input_shape):
    shapes, (batch, height, width) = [], input_shape[:3]
    channels = 2 * self.params.num_orientations
    for scale in range(self.params.num_scales):
      if scale:
        height = None if height is None else height // 2
        width = None if width is None else width // 2
      shapes.append((batch, height, width, channels))
    return shapes

  def get_config(self):
    return {**super().get_config(), **dataclasses.asdict(self.params)}
