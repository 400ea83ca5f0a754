"""`reduce_observation`: one observation to its `PartialDataset`, by the fast path when it applies."""
from __future__ import annotations

import time

from .fast import fast_context, fast_spec_supported, reduce_fast
from .makers_path import reduce_with_makers
from .spec import ObservationLike, ReductionSpec, resolve_observation

__all__ = ["reduce_observation"]


def reduce_observation(observation: ObservationLike, spec: ReductionSpec):
    """Reduce one observation to its `PartialDataset` (the distributed unit of work).

    Parameters
    ----------
    observation : Observation or (datastore_dir, obs_id)
        The observation, or where to read it (a `DataStore` is opened once per process and dir).
    spec : ReductionSpec

    Returns
    -------
    PartialDataset
        Counts/background/exposure/IRF-map contributions on the stacked geometry window, FoV norm
        and status, GTI, livetime, stage ``timings``. An observation whose FoV normalisation
        fails (no counts outside the exclusion, ...) has an all-False safe mask, i.e. contributes
        only its GTI, exactly as gammapy's stacking.

    Raises
    ------
    ObservationError
        See `reduce_to_dataset`.
    """
    t0 = time.perf_counter()
    obs = resolve_observation(observation)
    if fast_spec_supported(spec):
        partial = reduce_fast(obs, spec, fast_context(spec), t0)
        if partial is not None:
            return partial
    return reduce_with_makers(obs, spec)
