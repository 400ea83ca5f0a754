"""The light-curve step of a run: `LightCurveEstimator` from the config's ``light_curve`` section, its
time bins through the run's backend, and the table written as gammapy writes it.

Called by the pipeline with the per-observation datasets of ``datasets.stack: false`` (one `MapDataset`
per run, each with its GTI and its FoV background model, the source model shared), or, for a stacked
analysis, with the datasets of `light_curve_datasets`: the observations stacked per time bin by a
grouped reduction (a stacked dataset has one GTI spanning all runs and would give a one-bin curve).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..config import AnalysisConfig
from ..errors import ConfigError
from ..modeling.dataset import Datasets
from .outputs import atomic_write

__all__ = ["run_light_curve", "light_curve_datasets", "write_light_curve", "write_light_curve_figure", "LIGHT_CURVE_FILES",
           "LIGHT_CURVE_FIGURE"]

LIGHT_CURVE_FILES = ("light_curve.ecsv", "light_curve.fits")
LIGHT_CURVE_FIGURE = "light_curve.png"
FIGURE_SIZE = (8.0, 5.0)  # inches, at 100 dpi


def run_light_curve(datasets: Any, config: AnalysisConfig, backend: Any = None, fit: Any = None):
    """Light curve of ``light_curve.source``, or None when the section does not ask for one.

    Parameters
    ----------
    datasets : `Datasets` or list of `MapDataset`
        Datasets with GTIs and models (the source and, per dataset, its background model).
    config : `AnalysisConfig`
    backend : execution backend, optional
        Runs the time bins (``backend.map``); default: in this process. Results do not depend on it.
    fit : `Fit`, optional
        Its optimiser/covariance options are used in each bin.

    Returns
    -------
    light_curve : `FluxPoints` or None

    Raises
    ------
    ConfigError
        ``light_curve.source`` is not among the models.
    EstimatorInputError
        No dataset in any time interval.
    """
    from ..estimators import LightCurveEstimator

    section = config.light_curve
    if not section.requested:
        return None
    datasets = Datasets(datasets)
    names = datasets.models.names
    if section.source not in names:
        raise ConfigError("light_curve.source", f"no model named {section.source!r} (models: {names})")
    kwargs = section.estimator_kwargs()
    estimator = LightCurveEstimator(fit=fit, backend=backend, **kwargs)
    return estimator.run(datasets)


def light_curve_datasets(config: AnalysisConfig, obs_ids: list[int], backend: Any, spec: Any, models: Any,
                         obs_table: Any) -> Datasets:
    """The datasets a stacked analysis's light curve is estimated on: one grouped reduction pass.

    With ``light_curve.time_intervals``, the observations inside each interval (gammapy's
    ``select_time`` rule on the observation table's TSTART/TSTOP) are stacked into one dataset
    ``interval-<i>`` (as gammapy's ``stack_over_time_interval``); an observation crossing an
    interval's edge is left out with a warning, as gammapy's light curve leaves out a dataset that no
    bin contains; an interval without observations becomes an empty, marked bin of the light curve.
    Without intervals, one dataset ``obs-<id>`` per observation (one bin per run). Each dataset gets
    the source models of ``models`` and a FoV background model at norm 1 (the reduction's per-run
    FoV fit is in its background).

    Raises
    ------
    ConfigError
        No observation lies inside any of the intervals (``light_curve.time_intervals``).
    """
    import logging

    from ..data.grouping import group_by_observation, group_by_time_intervals
    from ..modeling.models import FoVBackgroundModel, Models
    from .unstacked import dataset_name, group_dataset, reduce_groups

    intervals = config.light_curve.intervals()
    if intervals is None:
        groups = group_by_observation(obs_ids)
        names = {o: dataset_name(o) for o in groups}
    else:
        table = obs_table.select_obs_id(list(obs_ids)) if obs_table is not None else None
        grouping = group_by_time_intervals(table, intervals, straddle="drop", allow_empty=True)
        for obs_id in getattr(grouping, "straddling", []) or []:
            logging.getLogger(__name__).warning(
                "light curve: observation %s crosses a time-interval edge and is in no bin", obs_id)
        groups = {int(o): k for o, k in grouping.groups.items()}
        if not groups:
            raise ConfigError("light_curve.time_intervals", "no selected observation lies inside any interval")
        names = {k: f"interval-{k}" for k in set(groups.values())}
    result = reduce_groups(config, sorted(groups), backend, groups, spec)
    # one copy of the source models, shared by every dataset (a bin with several datasets fits one source)
    sources = [m.copy() for m in models if not isinstance(m, FoVBackgroundModel)]
    datasets = []
    for key, state in result.state.items():
        if state is None:  # none of its observations reduced: the bin stays empty (marked by the estimator)
            continue
        dataset = group_dataset(state, names[key])
        dataset.models = Models(sources + [FoVBackgroundModel(dataset_name=dataset.name)])
        datasets.append(dataset)
    return Datasets(datasets)


def write_light_curve(light_curve: Any, outdir: str | os.PathLike, sed_type: str = "likelihood") -> list[Path]:
    """Write ``light_curve.ecsv`` and ``light_curve.fits`` (gammapy's "lightcurve" table) atomically."""
    outdir = Path(outdir)
    out = []
    for name in LIGHT_CURVE_FILES:
        out.append(atomic_write(outdir / name, lambda tmp: light_curve.write(tmp, sed_type=sed_type,
                                                                              format="lightcurve", overwrite=True)))
    return out


def write_light_curve_figure(light_curve: Any, outdir: str | os.PathLike, sed_type: str = "flux") -> Path | None:
    """Draw ``light_curve.png`` (flux vs time, errors, upper limits; one series per energy bin).

    Returns the path, or None when matplotlib (the optional 'plot' extra) is missing. Drawn on a
    `~matplotlib.figure.Figure` with the Agg canvas, leaving pyplot's state alone (as the report).
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    from ..visualization.light_curve import plot_light_curve

    fig = Figure(figsize=FIGURE_SIZE, dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    e_min, e_max = light_curve.energy_min.to_value("TeV"), light_curve.energy_max.to_value("TeV")
    for i in range(len(e_min)):
        plot_light_curve(light_curve, ax=ax, sed_type=sed_type, energy_index=i,
                         label=f"{e_min[i]:.3g} - {e_max[i]:.3g} TeV")
    ax.legend()
    ax.set_title("Light curve")
    path = Path(outdir) / LIGHT_CURVE_FIGURE
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    finally:
        fig.clear()
    return path
