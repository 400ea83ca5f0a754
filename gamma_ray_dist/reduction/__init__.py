"""Reduce one observation to its contribution to the stacked dataset (pure; no Ray).

`reduce_observation` is the body of the seed's data-reduction loop (cutout around the pointing,
``MapDatasetMaker``, ``SafeMaskMaker``, ``FoVBackgroundMaker``), returned as a `PartialDataset`
(plain arrays cropped to the stacked geometry, weighted as gammapy's ``MapDataset.stack`` weights
them). Modules, by role (imports point down this list only):

- `dispatch`: `reduce_observation`, choosing the fast path when it applies;
- `fast`: the makers' array functions on the cutout window of the stacked geometry, with
  per-process caches of the stacked pixel centres, solid angles and cutout windows;
- `makers_path`: the reference, the public makers on a cutout `MapDataset` (`reduce_to_dataset`);
- `spec`: `ReductionSpec` (frozen, content-keyed) and the per-process objects built from it.

Both paths give the same numbers (tests/test_reduction.py).
"""
from .dispatch import reduce_observation
from .makers_path import reduce_to_dataset, reduce_with_makers
from .spec import ObservationOutsideGeometry, ReductionSpec, prepare

__all__ = ["ReductionSpec", "reduce_observation", "reduce_to_dataset", "reduce_with_makers",
           "ObservationOutsideGeometry", "prepare"]
