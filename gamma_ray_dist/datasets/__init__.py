"""Datasets: MapDataset, PSF/EDisp maps, the distributed partial/accumulator contract.

Names are resolved lazily so that ``gamma_ray_dist.modeling`` (which imports
``datasets.core``) and ``datasets.map`` (which uses the models) can import each other.
"""
from importlib import import_module

_EXPORTS = {
    "Dataset": "core", "Datasets": "core",
    "MapDataset": "map", "create_map_dataset_geoms": "map", "RAD_AXIS_DEFAULT": "map",
    "PSFMap": "irf_maps", "EDispKernelMap": "irf_maps", "PSFKernel": "irf_maps", "EDispKernel": "irf_maps",
    "PartialDataset": "partial", "StackGeometry": "partial",
    "StackAccumulator": "accumulator",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
