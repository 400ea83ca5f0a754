"""The light-curve step of a run: `LightCurveEstimator` from the config's ``light_curve`` section, its
time bins through the run's backend, and the table written as gammapy writes it.

Called by the pipeline with the per-observation datasets (one `MapDataset` per run, each with its GTI
and its FoV background model, the source model shared): a stacked dataset has one GTI spanning all
runs and gives a one-bin light curve.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..config import AnalysisConfig
from ..errors import ConfigError
from ..modeling.dataset import Datasets
from .outputs import atomic_write

__all__ = ["run_light_curve", "write_light_curve", "write_light_curve_figure", "LIGHT_CURVE_FILES",
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
