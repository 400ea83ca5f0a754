"""PSF convolution and energy dispersion on plain arrays (the IRF steps of model evaluation).

Conventions follow gammapy 2.1 (``WcsNDMap.convolve`` with ``mode="same"`` and
``datasets.utils.apply_edisp``): kernels are odd-sized ``(n_energy_true, k, k)`` arrays whose centre
pixel ``k // 2`` is the zero offset, images are ``(..., ny, nx)``; an image plane ``i`` is convolved with
kernel plane ``i``.

Two convolution paths give the same numbers (up to rounding):

- `convolve_same`: FFT convolution of full images (extended sources);
- `convolve_points_same`: shift-and-add of the kernel for images with a handful of non-zero pixels
  (a point source has at most 4), exact and about 100x cheaper than an FFT of the cutout.
"""
from __future__ import annotations

import numpy as np
from scipy.signal import fftconvolve

__all__ = ["convolve_same", "convolve_points_same", "apply_edisp_values"]


def _check_kernel(kernel: np.ndarray) -> np.ndarray:
    kernel = np.asarray(kernel, dtype=float)
    if kernel.ndim != 3 or kernel.shape[-1] != kernel.shape[-2] or kernel.shape[-1] % 2 != 1:
        raise ValueError(f"PSF kernel must have shape (n_energy, k, k) with k odd, got {kernel.shape}")
    return kernel


def convolve_same(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve an image (or one image per energy) with a per-energy kernel, output the image size.

    Parameters
    ----------
    image : ndarray, shape (ny, nx) or (n_energy, ny, nx)
        A 2D image is convolved with every kernel plane (as gammapy does for energy-independent
        spatial models).
    kernel : ndarray, shape (n_energy, k, k)
        Odd-sized kernel planes.

    Returns
    -------
    ndarray, shape (n_energy, ny, nx)
    """
    kernel = _check_kernel(kernel)
    image = np.asarray(image, dtype=float)
    if image.ndim == 2:
        # explicit broadcast: "same" mode crops to the first input's shape, energy axis included
        image = np.broadcast_to(image, (kernel.shape[0],) + image.shape)
    elif image.shape[0] != kernel.shape[0]:
        raise ValueError(f"image has {image.shape[0]} energy planes, kernel {kernel.shape[0]}")
    return fftconvolve(image, kernel, mode="same", axes=(-2, -1))


def convolve_points_same(iy: np.ndarray, ix: np.ndarray, weights: np.ndarray, shape: tuple[int, int],
                         kernel: np.ndarray) -> np.ndarray:
    """Convolution ("same" size) of an image that is zero except at a few pixels.

    Parameters
    ----------
    iy, ix : ndarray of int
        Pixel indices of the non-zero pixels (inside the image).
    weights : ndarray
        Pixel values.
    shape : (ny, nx)
        Image shape.
    kernel : ndarray, shape (n_energy, k, k)

    Returns
    -------
    ndarray, shape (n_energy, ny, nx)
        ``sum_p w_p * kernel[:, c + y - iy_p, c + x - ix_p]`` where the kernel index is valid,
        ``c = k // 2``.
    """
    kernel = _check_kernel(kernel)
    ny, nx = int(shape[0]), int(shape[1])
    k = kernel.shape[-1]
    c = k // 2
    out = np.zeros((kernel.shape[0], ny, nx))
    for py, px, w in zip(np.asarray(iy, int), np.asarray(ix, int), np.asarray(weights, float)):
        if w == 0:
            continue
        # output rows y with 0 <= c + y - py < k and 0 <= y < ny
        y0, y1 = max(0, py - c), min(ny, py - c + k)
        x0, x1 = max(0, px - c), min(nx, px - c + k)
        if y0 >= y1 or x0 >= x1:
            continue
        ky0, kx0 = c + y0 - py, c + x0 - px
        out[:, y0:y1, x0:x1] += w * kernel[:, ky0:ky0 + (y1 - y0), kx0:kx0 + (x1 - x0)]
    return out


def apply_edisp_values(npred_true: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Redistribute predicted counts from true to reconstructed energy bins.

    Parameters
    ----------
    npred_true : ndarray, shape (n_energy_true, ny, nx)
    matrix : ndarray, shape (n_energy_true, n_energy)
        Probability of each true-energy bin to land in each reconstructed bin.

    Returns
    -------
    ndarray, shape (n_energy, ny, nx)
    """
    npred_true = np.asarray(npred_true, dtype=float)
    matrix = np.asarray(matrix, dtype=float)
    if matrix.shape[0] != npred_true.shape[0]:
        raise ValueError(f"edisp matrix has {matrix.shape[0]} true-energy bins, npred {npred_true.shape[0]}")
    n_true = npred_true.shape[0]
    flat = matrix.T @ npred_true.reshape(n_true, -1)
    return flat.reshape((matrix.shape[1],) + npred_true.shape[1:])
