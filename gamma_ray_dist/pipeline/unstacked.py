"""The unstacked analysis (``datasets.stack: false``): one `MapDataset` per observation, a joint fit.

The observations are reduced on the backend as for the stacked analysis, by the grouped reduction
with one group per observation (``backend.reduce(..., groups={obs_id: obs_id})``): each group's
state is the observation's own sums, cropped to the part of the analysis geometry its cutout covers
(gammapy's per-observation "trim" cutout of width ``2 * offset_max``). `DatasetFilesWriter`, the
reduction's ``on_group`` callback, finalises each observation's dataset as soon as its state is
final and writes it (``datasets/obs-<id>.fits.gz``); the driver keeps only the file name and the
observation's summary numbers, never all the datasets at once. `write_index` then writes
``datasets/datasets.yaml`` (gammapy's ``Datasets.write`` layout, readable by gammapy's and our
``Datasets.read``), and the fit reads the datasets back from there.

The datasets hold what the stacked reduction sums (counts and background inside the safe mask,
background already times the per-observation FoV background norm, exposure inside the spatial safe
mask), so stacking them gives the stacked analysis' dataset (exact counts); the joint fit gives
each dataset its own ``FoVBackgroundModel`` (``obs-<id>-bkg``), as gammapy's ``Analysis.set_models``.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Hashable, Mapping

from . import outputs
from .tasks import SummaryAccumulator, make_shared, reduce_task

__all__ = ["DATASETS_DIR", "DATASETS_INDEX", "dataset_name", "DatasetFilesWriter", "reduce_groups",
           "reduce_per_observation", "group_dataset", "stacked_view"]

#: Folder of the per-observation dataset files under the output directory, and the index in it.
DATASETS_DIR = "datasets"
DATASETS_INDEX = "datasets.yaml"


def dataset_name(obs_id: int) -> str:
    """Name of an observation's dataset (its FoV background model is ``<name>-bkg``)."""
    return f"obs-{int(obs_id)}"


class DatasetFilesWriter:
    """The ``on_group`` callback of a per-observation reduction: finalise, write, forget.

    Called in the driver with ``(obs_id, state)`` as each observation's state is final; writes the
    cropped `MapDataset` atomically to ``directory/obs-<id>.fits.gz`` and returns its index entry
    (None for an observation that could not be reduced: it has no dataset). ``summaries`` collects the
    per-observation numbers of the run report.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.summaries: dict[int, dict[str, Any]] = {}

    def __call__(self, obs_id: Hashable, state: dict | None) -> dict | None:
        if state is None:
            return None
        acc = SummaryAccumulator.from_state(state)
        self.summaries.update(acc.summaries)
        name = dataset_name(int(obs_id))
        dataset = acc.to_dataset(name, crop=True)
        filename = f"{name}.fits.gz"
        outputs.write_dataset(self.directory / filename, dataset)
        return {"name": name, "type": dataset.tag, "filename": filename}

    def write_index(self, entries: dict[Hashable, dict | None]) -> Path:
        """Write ``datasets.yaml`` listing the written datasets in obs id order; its path."""
        from ..modeling.dataset import write_datasets_index

        listed = [entries[k] for k in sorted(entries) if entries[k] is not None]
        path = self.directory / DATASETS_INDEX
        outputs.atomic_write(path, lambda tmp: write_datasets_index(tmp, listed, overwrite=True))
        return path


def reduce_groups(config: Any, obs_ids: list[int], backend: Any, groups: Mapping[int, Hashable], spec: Any = None,
                  task_fn: Any = reduce_task, on_group: Any = None, **overrides: Any):
    """Reduce ``obs_ids`` on ``backend`` into one stacked state per group, in one pass.

    ``groups`` maps each obs id to its group's key: `gamma_ray_dist.data.group_by_observation`,
    ``group_by_time_intervals(...).groups`` (a light curve's bins, nights) or any mapping. Returns the
    backend's ``RunResult``: ``state`` is ``{key: state}`` in the order of the groups' first
    observation (None for a group none of whose observations could be reduced), or
    ``{key: on_group(key, state)}`` with a callback. ``group_dataset`` finalises a state.
    """
    from ..datasets.partial import StackGeometry
    from .inputs import datastore_dir, make_reduction_spec

    spec = spec if spec is not None else make_reduction_spec(config)
    geometry = StackGeometry.from_dataset(spec.stacked_dataset())
    shared = make_shared(str(datastore_dir(config)), spec)
    make_acc = functools.partial(SummaryAccumulator, geometry, spec.name)
    return backend.reduce(obs_ids, task_fn, shared, make_acc, groups=groups, on_group=on_group, **overrides)


def reduce_per_observation(config: Any, obs_ids: list[int], backend: Any, spec: Any = None,
                           task_fn: Any = reduce_task, on_group: Any = None, **overrides: Any):
    """`reduce_groups` with one group per observation (``{obs_id: state}``)."""
    from ..data.grouping import group_by_observation

    return reduce_groups(config, obs_ids, backend, group_by_observation(obs_ids), spec, task_fn, on_group,
                         **overrides)


def group_dataset(state: dict | None, name: str, crop: bool = True):
    """The `MapDataset` of a group's state (``crop``: on the part of the geometry its observations
    cover); raises ValueError for a group that reduced nothing (None), never a dataset of zeros."""
    if state is None:
        raise ValueError(f"group {name!r}: none of its observations could be reduced, it has no dataset")
    return SummaryAccumulator.from_state(state).to_dataset(name, crop=crop)


def stacked_view(datasets: Any, spec: Any):
    """The per-observation datasets stacked onto the analysis geometry (name ``spec.name``), with the
    source models of ``datasets`` and a FoV background model at norm 1 (each dataset's fitted norm is
    in the stacked background): what the sky maps and the report show."""
    from ..modeling.dataset import Datasets
    from ..modeling.models import FoVBackgroundModel, Models

    view = Datasets([spec.stacked_dataset()] + list(datasets)).stack_reduce(name=spec.name)
    sources = [m for m in datasets.models if not isinstance(m, FoVBackgroundModel)]
    view.models = Models(sources + [FoVBackgroundModel(dataset_name=spec.name)])
    return view
