"""A plain NumPy/OpenCV reference of the Gabor descriptor, one image at a time.

For tests and benchmarks only (the pipeline never imports it): cv2.getGaborKernel and
cv2.filter2D (float64, default border = reflect without repeating the edge pixel) on a
2x2-block-mean pyramid of the BT.601 gray image, and np.histogram with the fitted edges.
"""

import math

import cv2
import numpy as np

from sjft_tf.descriptors.gabor import LUMA_WEIGHTS, GaborParams


def gray(image: np.ndarray) -> np.ndarray:
  """RGB [h, w, 3] in [0, 255] -> float64 [h, w] in [0, 1]."""
  return image.astype(np.float64) @ np.asarray(LUMA_WEIGHTS) / 255.0


def halve(level: np.ndarray) -> np.ndarray:
  """2x2 block means, dropping an odd last row or column."""
  h, w = level.shape[0] // 2 * 2, level.shape[1] // 2 * 2
  return level[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))


def gabor_responses(image: np.ndarray, params: GaborParams = GaborParams()) -> list:
  """The bank's response maps for one RGB image: float64 [h_s, w_s, 2 * orientations]."""
  sigma = params.sigma_per_wavelength * params.wavelength
  kernels = []
  for i in range(params.num_orientations):
    theta = math.pi * i / params.num_orientations
    size = (params.kernel_size, params.kernel_size)
    real = cv2.getGaborKernel(size, sigma, theta, params.wavelength, params.gamma, 0,
                              ktype=cv2.CV_64F)
    imaginary = cv2.getGaborKernel(size, sigma, theta, params.wavelength, params.gamma,
                                   -math.pi / 2, ktype=cv2.CV_64F)
    kernels += [real - real.mean(), imaginary]
  level, responses = gray(image), []
  for scale in range(params.num_scales):
    if scale:
      level = halve(level)
    responses.append(np.stack([cv2.filter2D(level, cv2.CV_64F, k) for k in kernels], -1))
  return responses


def histograms(responses: list, edges: np.ndarray, zero_floor=None) -> np.ndarray:
  """Per-channel normalised histograms with inner edges [C, B-1]: float64 [C * B].

  Responses with magnitude under zero_floor [C] count as 0 (as in HistogramLayer).
  """
  rows, channel = [], 0
  for response in responses:
    for c in range(response.shape[-1]):
      bins = np.concatenate([[-np.inf], edges[channel].astype(np.float64), [np.inf]])
      values = response[..., c].ravel()
      if zero_floor is not None:
        values = np.where(np.abs(values) < zero_floor[channel], 0.0, values)
      rows.append(np.histogram(values, bins=bins)[0] / values.size)
      channel += 1
  return np.concatenate(rows)


def gabor_descriptor(image: np.ndarray, edges: np.ndarray, zero_floor=None,
                     params: GaborParams = GaborParams()) -> np.ndarray:
  """The full reference descriptor of one image: float64 [C * B]."""
  return histograms(gabor_responses(image, params), edges, zero_floor)
