"""Makers: reduce one observation to a `MapDataset` (gammapy 2.1 API), over pure array functions.

- `MapDatasetMaker`: counts, exposure, background, PSF and EDisp kernel maps (`projection`).
- `SafeMaskMaker`: offset-max, aeff-default, aeff-max, edisp-bias, bkg-peak (`safe`).
- `FoVBackgroundMaker`: FoV background norm by "scale" or a direct Cash "fit" (`fov`).
"""
from .fov import FoVBackgroundMaker
from .map import (
    MapDatasetMaker,
    make_counts,
    make_edisp_kernel_map,
    make_map_background_irf,
    make_map_exposure_true_energy,
    make_psf_map,
)
from .safe import SafeMaskMaker

__all__ = [
    "MapDatasetMaker",
    "SafeMaskMaker",
    "FoVBackgroundMaker",
    "make_counts",
    "make_map_exposure_true_energy",
    "make_map_background_irf",
    "make_psf_map",
    "make_edisp_kernel_map",
]
