"""Datasets: MapDataset, PSF/EDisp maps, the distributed partial/accumulator contract.

`Dataset` and `Datasets`, the interface `Fit` works on, are defined in the modeling layer
(`gamma_ray_dist.modeling.dataset`) and exported here, as gammapy exports them from its datasets.
"""
from ..modeling.dataset import Dataset, Datasets
from .accumulator import StackAccumulator
from .irf_maps import EDispKernel, EDispKernelMap, PSFKernel, PSFMap
from .map import RAD_AXIS_DEFAULT, MapDataset, create_map_dataset_geoms
from .partial import PartialDataset, StackGeometry

__all__ = [
    "Dataset", "Datasets", "MapDataset", "create_map_dataset_geoms", "RAD_AXIS_DEFAULT",
    "PSFMap", "EDispKernelMap", "PSFKernel", "EDispKernel", "PartialDataset", "StackGeometry",
    "StackAccumulator",
]
