"""Datasets: MapDataset, PSF/EDisp maps, the distributed partial/accumulator contract.

`Dataset` and `Datasets`, the interface `Fit` works on, are defined in the modeling layer
(`gamma_ray_dist.modeling.dataset`) and exported here, as gammapy exports them from its datasets.

The names are resolved on first use: a Ray worker that reduces observations imports
`datasets.partial` and `datasets.accumulator` (plain arrays) and must not pay for the modeling
layer (models, scipy.integrate, iminuit: about a second of start-up per worker process).
"""
from importlib import import_module

_EXPORTS = {
    "Dataset": "..modeling.dataset", "Datasets": "..modeling.dataset",
    "StackAccumulator": ".accumulator",
    "EDispKernel": ".irf_maps", "EDispKernelMap": ".irf_maps", "PSFKernel": ".irf_maps", "PSFMap": ".irf_maps",
    "RAD_AXIS_DEFAULT": ".map", "MapDataset": ".map", "create_map_dataset_geoms": ".map",
    "PartialDataset": ".partial", "StackGeometry": ".partial",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        if name == "Datasets":  # Datasets.read finds MapDataset by its tag: define (register) it first
            import_module(".map", __name__)
        value = getattr(import_module(_EXPORTS[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
