"""Run report: the seed workflow's figures (PNG) and a short Markdown summary of a run.

`write_report` writes into ``out_dir``, each file atomically (`gamma_ray_dist.outputs.atomic_write`):

- ``counts.png``: counts summed over energy, smoothed 0.05 deg, sqrt stretch, colour bar (and the
  exclusion region, when given, drawn dashed);
- ``npred_signal.png``: predicted counts per energy bin of each source model and the background
  (`~gamma_ray_dist.visualization.plot_npred_signal`);
- ``residuals_spatial.png``: residual image, ``diff/sqrt(model)``, colour scale -0.5..0.5;
- ``residuals.png``: the same image and the spectral residuals in a 0.5 deg circle around the
  source (or the map centre);
- ``spectrum.png``: the source's spectral model in e2dnde with its butterfly over the flux-point (or
  fit) energy range, and the flux points on top;
- with ``sky_maps`` (the dict of `gamma_ray_dist.pipeline.sky_maps.run_sky_maps`):
  ``significance_map.png``, the significance (``sqrt_ts``) of the TS map (else the excess map) with
  the fitted source positions marked, and ``significance_distribution.png``, the significance
  distribution outside the exclusion regions with its fitted Gaussian and the standard normal;
- with ``light_curve`` (`FluxPoints` with a time axis): ``light_curve.png`` (flux vs time, one
  series per energy bin) and a light-curve table;
- ``report.md``: links to the figures, fit summary, parameters, flux points, reduction summary and
  timings.

A figure is made only when its inputs are there: the npred and residual figures need models, the
spectrum a fitted source (a fit result or flux points). matplotlib is optional: without it only
``report.md`` is written, with a note. Figures are drawn on `matplotlib.figure.Figure` objects with
the Agg canvas, never through pyplot's figure manager, so the caller's pyplot state and backend are
left alone.
"""
from __future__ import annotations

import logging
import math
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable

import numpy as np
from astropy import units as u

from .outputs import atomic_write, write_text

__all__ = ["write_report", "FIGURES", "SKY_MAP_FIGURES", "LIGHT_CURVE_FIGURES", "FIGURE_SIZES", "DPI", "MISSING_PLOT_NOTE"]

log = logging.getLogger(__name__)

#: Figure names in report order (file ``<name>.png``).
FIGURES = ("counts", "npred_signal", "residuals_spatial", "residuals", "spectrum")
#: Figures of the sky maps (made when ``write_report`` gets ``sky_maps``), after `FIGURES`.
SKY_MAP_FIGURES = ("significance_map", "significance_distribution")
#: The light-curve figure (made when ``write_report`` gets ``light_curve``), last.
LIGHT_CURVE_FIGURES = ("light_curve",)
#: Figure sizes in inches (PNG pixel size = size * DPI; no tight bounding box).
FIGURE_SIZES = {
    "counts": (6.0, 5.0),
    "npred_signal": (7.0, 5.0),
    "residuals_spatial": (6.0, 5.0),
    "residuals": (12.0, 4.0),
    "spectrum": (8.0, 6.0),
    "significance_map": (6.0, 5.0),
    "significance_distribution": (6.0, 4.0),
}
DPI = 100
MISSING_PLOT_NOTE = (
    "Figures were not made: they need matplotlib, an optional dependency "
    "(`pip install gamma_ray_dist[plot]`)."
)

COUNTS_SMOOTH = 0.05 * u.deg
RESIDUAL_REGION_RADIUS = 0.5 * u.deg
RESIDUAL_KWARGS = {"method": "diff/sqrt(model)", "vmin": -0.5, "vmax": 0.5}


# ---- small accessors (objects or plain dicts, e.g. a FitResult read back from JSON) ---------------
def _field(obj: Any, name: str, default: Any = None) -> Any:
    if obj is None:
        return default
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    try:
        return getattr(obj, name)
    except Exception:  # properties of partial results may raise (e.g. no optimize result)
        return default


def _is_background(model: Any) -> bool:
    return type(model).__name__ == "FoVBackgroundModel"


def _model_list(models: Any) -> list:
    if models is None:
        return []
    try:
        return list(models)
    except TypeError:
        return [models]


def _find_source(models: Any, source: Any):
    """The source model: by name, by index, or the first non-background model with a spectrum."""
    candidates = [m for m in _model_list(models) if not _is_background(m)]
    if isinstance(source, int) and not isinstance(source, bool):
        return candidates[source] if -len(candidates) <= source < len(candidates) else None
    if source is not None:
        name = _field(source, "name", source)
        return next((m for m in candidates if m.name == name), None)
    return next((m for m in candidates if _field(m, "spectral_model") is not None), None)


def _source_position(model: Any):
    spatial = _field(model, "spatial_model")
    if spatial is None:
        return None
    try:
        return spatial.position
    except Exception:
        return None


# ---- Markdown --------------------------------------------------------------------------------------
def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ").strip()


def _md_table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(["---"] * len(headers)) + "|"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _fmt(value: Any, spec: str) -> str:
    if value is None:
        return ""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(value):
        return "nan"
    return format(value, spec)


def _fit_section(fit_result: Any) -> list[str]:
    if fit_result is None:
        return ["No fit was run."]
    lines = [
        f"- success: {_field(fit_result, 'success')}",
        f"- message: {_cell(_field(fit_result, 'message'))}",
        f"- nfev: {_field(fit_result, 'nfev')}",
        f"- total stat: {_fmt(_field(fit_result, 'total_stat'), '.2f')}",
    ]
    cov = _field(fit_result, "covariance_result")
    if cov is not None:
        lines.append(f"- covariance: {_field(cov, 'success')} ({_cell(_field(cov, 'message'))})")
    return lines


def _parameter_rows(models: Any) -> list[list[str]]:
    rows = []
    if models is None:
        return rows
    table = None
    if hasattr(models, "to_parameters_table"):
        try:
            table = models.to_parameters_table()
        except Exception:  # noqa: BLE001 - fall back to walking the models
            table = None
    if table is not None:
        for row in table:
            rows.append([row["model"], row["name"], _fmt(row["value"], ".4e"), _fmt(row["error"], ".3e"),
                         row["unit"], bool(row["frozen"])])
        return rows
    for model in _model_list(models):
        for par in model.parameters:
            rows.append([model.name, par.name, _fmt(par.value, ".4e"), _fmt(par.error, ".3e"),
                         u.Unit(par.unit).to_string("fits"), bool(par.frozen)])
    return rows


#: Unit of the flux points' dnde in the report, written as everywhere else (gammapy's FITS format).
DNDE_UNIT = u.Unit("cm-2 s-1 TeV-1").to_string("fits")
FLUX_UNIT = u.Unit("cm-2 s-1").to_string("fits")


def _quantity_values(fp: Any, name: str, unit: str | None = None):
    try:
        value = getattr(fp, name)
    except Exception:  # noqa: BLE001 - quantity not computed by this estimate
        return None
    if value is None:
        return None
    if unit is not None:
        return np.atleast_1d(u.Quantity(value).to_value(unit)).astype(float)
    return np.atleast_1d(np.asarray(getattr(value, "value", value), dtype=float))


def _flux_points_rows(flux_points: Any) -> list[list[str]]:
    e_ref = _quantity_values(flux_points, "energy_ref", "TeV")
    if e_ref is None:
        return []
    columns = {
        "dnde": _quantity_values(flux_points, "dnde", "cm-2 s-1 TeV-1"),
        "dnde_err": _quantity_values(flux_points, "dnde_err", "cm-2 s-1 TeV-1"),
        "ts": _quantity_values(flux_points, "ts"),
        "sqrt_ts": _quantity_values(flux_points, "sqrt_ts"),
    }
    specs = {"dnde": ".3e", "dnde_err": ".3e", "ts": ".2f", "sqrt_ts": ".2f"}
    rows = []
    for i, e in enumerate(e_ref):
        row = [_fmt(e, ".3f")]
        for key, values in columns.items():
            row.append("" if values is None or i >= values.size else _fmt(values[i], specs[key]))
        rows.append(row)
    return rows


def _light_curve_section(light_curve: Any) -> list[str]:
    """One row per time bin and energy bin: the bin, flux (or its upper limit), TS; empty bins marked."""
    table = light_curve.to_table(sed_type="flux", format="lightcurve")
    unit = FLUX_UNIT
    flux = np.atleast_2d(table["flux"].quantity.to_value(unit))
    flux_err = np.atleast_2d(table["flux_err"].quantity.to_value(unit)) if "flux_err" in table.colnames else None
    ts = np.atleast_2d(np.asarray(table["ts"])) if "ts" in table.colnames else None
    is_ul = np.atleast_2d(np.asarray(table["is_ul"], dtype=bool)) if "is_ul" in table.colnames else None
    flux_ul = (np.atleast_2d(table["flux_ul"].quantity.to_value(unit)) if "flux_ul" in table.colnames else None)
    e_min = np.atleast_2d(table["e_min"].quantity.to_value("TeV"))
    e_max = np.atleast_2d(table["e_max"].quantity.to_value("TeV"))
    rows = []
    for i in range(len(table)):
        for j in range(flux.shape[1]):
            if not np.isfinite(flux[i, j]) and (ts is None or not np.isfinite(ts[i, j])):
                value, err = "no data", ""
            elif is_ul is not None and is_ul[i, j] and flux_ul is not None:
                value, err = f"< {flux_ul[i, j]:.3e}", "(UL)"
            else:
                value = f"{flux[i, j]:.3e}"
                err = "" if flux_err is None else f"{flux_err[i, j]:.3e}"
            rows.append([f"{table['time_min'][i]:.5f}", f"{table['time_max'][i]:.5f}",
                         f"{e_min[i, j]:.3g}-{e_max[i, j]:.3g}", value, err,
                         "" if ts is None or not np.isfinite(ts[i, j]) else f"{ts[i, j]:.2f}"])
    return [_md_table(["MJD start", "MJD stop", "energy [TeV]", f"flux [{unit}]", "flux_err", "ts"], rows)]


def _reduction_section(reduction: Mapping) -> list[str]:
    entries = list(reduction.get("observations") or [])
    ok = [e for e in entries if str(e.get("status", "ok")) == "ok"]
    failed = [e for e in entries if str(e.get("status", "ok")) != "ok"]
    out = [f"Observations: {len(entries)} selected, **{len(ok)} ok**, **{len(failed)} failed**."]
    if failed:
        out += ["", "Failed observations:", "",
                _md_table(["obs_id", "status", "reason"],
                          [[e.get("obs_id"), e.get("status"), e.get("error") or "(no reason given)"]
                           for e in failed])]
    if ok:
        out += ["", "Reduced observations:", "",
                _md_table(["obs_id", "counts", "background", "bkg_norm", "mask_safe_bins"],
                          [[e.get("obs_id"), e.get("counts", ""), _fmt(e.get("background"), ".2f"),
                            _fmt(e.get("bkg_norm"), ".3f"), e.get("mask_safe_bins", "")] for e in ok])]
    return out


def _timings_section(timings: Mapping) -> list[str]:
    """Seconds per stage; the total is ``timings["total"]`` (the run's wall time) if given, else their sum."""
    rows = [[stage, _fmt(seconds, ".2f")] for stage, seconds in timings.items() if stage != "total"]
    try:
        total = float(timings["total"]) if "total" in timings else sum(float(s) for _, s in rows)
        rows.append(["**total**", f"**{total:.2f}**"])
    except (TypeError, ValueError):
        pass
    return [_md_table(["stage", "seconds"], rows)]


def update_report_timings(path, timings: Mapping) -> None:
    """Rewrite the Timings section of an existing ``report.md`` (the run's total is known only after it)."""
    path = Path(path)
    if not path.is_file():
        return
    head, sep, _ = path.read_text().partition("## Timings\n")
    if sep:
        write_text(path, head + sep + "\n" + "\n".join(_timings_section(timings)) + "\n")


def _dataset_section(dataset: Any) -> list[str]:
    lines = [f"- name: `{_field(dataset, 'name')}`"]
    counts = _field(dataset, "counts")
    if counts is not None:
        lines.append(f"- total counts: {int(np.nansum(np.asarray(counts.data)))}")
        try:
            energy = counts.geom.axes["energy"].edges.to_value("TeV")
            lines.append(f"- energy axis: {energy[0]:.3g} - {energy[-1]:.3g} TeV, {energy.size - 1} bins")
            nx, ny = (int(np.ravel(n)[0]) for n in counts.geom.npix)
            lines.append(f"- spatial bins: {nx} x {ny}")
        except Exception:  # noqa: BLE001 - summary only
            pass
    return lines


# ---- figures ---------------------------------------------------------------------------------------
def _colorbar(fig, img, ax, label: str = ""):
    """Colour bar beside ``ax`` drawn on ``fig`` (not pyplot's current figure)."""
    from matplotlib.axes import Axes
    from mpl_toolkits.axes_grid1 import make_axes_locatable

    cax = make_axes_locatable(ax).append_axes(position="right", size="5%", pad="2%", axes_class=Axes)
    return fig.colorbar(img, cax=cax, label=label)


def _draw_counts(fig, dataset, exclusion_region=None):
    from ..visualization import plot_map
    from ..visualization.maps import sky_axes

    image = dataset.counts.sum_over_axes(keepdims=False).smooth(COUNTS_SMOOTH)
    ax = sky_axes(image.geom, fig=fig)
    plot_map(image, ax=ax, stretch="sqrt")
    _colorbar(fig, ax.images[-1], ax, label=u.Unit(image.unit).to_string() or "counts")
    if exclusion_region is not None:
        from ..maps import parse_regions

        wcs = image.geom.to_image().wcs
        for reg in parse_regions(exclusion_region):
            pix = reg.to_pixel(wcs) if hasattr(reg, "to_pixel") else reg
            pix.plot(ax=ax, edgecolor="white", facecolor="none", linestyle="--", lw=1)
    ax.set_title(f"Counts (smoothed {COUNTS_SMOOTH.value:g} deg)", fontsize="medium")


def _draw_npred_signal(fig, dataset):
    from ..visualization import plot_npred_signal

    ax = fig.add_subplot(1, 1, 1)
    plot_npred_signal(dataset, ax=ax)
    ax.set_title("Predicted counts", fontsize="medium")


def _draw_residuals_spatial(fig, dataset):
    from ..visualization import plot_residuals_spatial
    from ..visualization.maps import sky_axes

    ax = sky_axes(dataset.counts.geom, fig=fig)
    plot_residuals_spatial(dataset, ax=ax, add_cbar=False, **RESIDUAL_KWARGS)
    _colorbar(fig, ax.images[-1], ax)


def _draw_residuals(fig, dataset, region):
    from ..visualization import plot_residuals
    from ..visualization.maps import sky_axes

    ax_spatial = sky_axes(dataset.counts.geom, fig=fig, subplot=(1, 2, 1))
    ax_spectral = fig.add_subplot(1, 2, 2)
    plot_residuals(dataset, ax_spatial=ax_spatial, ax_spectral=ax_spectral,
                   kwargs_spatial=dict(add_cbar=False, **RESIDUAL_KWARGS),
                   kwargs_spectral=dict(method="diff", region=region))
    _colorbar(fig, ax_spatial.images[-1], ax_spatial)
    fig.subplots_adjust(left=0.08, right=0.97, bottom=0.15, wspace=0.35)


def _has_errors(model) -> bool:
    errors = [p.error for p in model.parameters if not p.frozen]
    return any(np.isfinite(e) and e > 0 for e in errors)


def _draw_spectrum(fig, spectral_model, energy_bounds, flux_points=None, label=None):
    from ..visualization import plot_flux_points, plot_spectrum, plot_spectrum_error

    ax = fig.add_subplot(1, 1, 1)
    plot_spectrum(spectral_model, energy_bounds, ax=ax, sed_type="e2dnde", label=label or "model")
    if _has_errors(spectral_model):
        plot_spectrum_error(spectral_model, energy_bounds, ax=ax, sed_type="e2dnde")
    if flux_points is not None:
        plot_flux_points(flux_points, ax=ax, sed_type="e2dnde", label="flux points", color="tab:red")
    ax.legend()
    ax.set_title("Spectrum", fontsize="medium")


def _sky_map_choice(sky_maps: Mapping):
    """``(name, FluxMaps)`` of the map whose significance is shown: the TS map, else the excess map."""
    for name in ("ts_map", "excess_map"):
        if sky_maps.get(name) is not None:
            return name, sky_maps[name]
    return None, None


_SKY_MAP_LABELS = {"ts_map": "TS map", "excess_map": "excess map"}


def _draw_significance_map(fig, flux_maps, positions, label):
    from ..visualization.maps import sky_axes
    from ..visualization.sky_maps import plot_significance_map

    sqrt_ts = flux_maps.sqrt_ts
    ax = sky_axes(sqrt_ts.geom.to_image(), fig=fig)
    plot_significance_map(sqrt_ts, positions=positions, ax=ax)
    ax.set_title(f"Significance ({label})", fontsize="medium")


def _draw_significance_distribution(fig, stats, label):
    from ..visualization.sky_maps import plot_significance_distribution

    ax = fig.add_subplot(1, 1, 1)
    plot_significance_distribution(stats["values"], mean=stats.get("mean"), sigma=stats.get("sigma"), ax=ax)
    ax.set_title(f"Significance outside the exclusion regions ({label})", fontsize="medium")
    fig.subplots_adjust(bottom=0.14)


def _sky_maps_section(sky_maps: Mapping) -> list[str]:
    lines = []
    for name, path in (sky_maps.get("paths") or {}).items():
        lines.append(f"- {_SKY_MAP_LABELS.get(name, name)}: `{Path(path).name}`")
    for name, stats in (sky_maps.get("significance") or {}).items():
        lines.append(f"- significance outside the exclusion regions ({_SKY_MAP_LABELS.get(name, name)}): "
                     f"{stats.get('n', 0)} pixels, fitted Gaussian mean {_fmt(stats.get('mean'), '.3f')}, "
                     f"width {_fmt(stats.get('sigma'), '.3f')} (standard normal: 0, 1)")
    positions = sky_maps.get("source_positions") or []
    if positions:
        rows = []
        for src, pos in positions:
            icrs = pos.icrs
            rows.append([src, _fmt(icrs.ra.deg, ".4f"), _fmt(icrs.dec.deg, ".4f")])
        lines += ["", "Fitted source positions (marked on the significance map):", "",
                  _md_table(["source", "ra [deg]", "dec [deg]"], rows)]
    return lines


def _energy_bounds(dataset, flux_points) -> u.Quantity:
    """Flux-point energy range, else the energies of the fit (safe & fit mask), else the whole axis."""
    lo = _quantity_values(flux_points, "energy_min", "TeV") if flux_points is not None else None
    hi = _quantity_values(flux_points, "energy_max", "TeV") if flux_points is not None else None
    if lo is not None and hi is not None and np.isfinite(lo).any():
        return u.Quantity([np.nanmin(lo), np.nanmax(hi)], "TeV")
    edges = dataset.counts.geom.axes["energy"].edges.to_value("TeV")
    mask = _field(dataset, "mask")
    if mask is not None:
        used = np.asarray(mask.data, bool).reshape(edges.size - 1, -1).any(axis=1)
        if used.any():
            idx = np.flatnonzero(used)
            return u.Quantity([edges[idx[0]], edges[idx[-1] + 1]], "TeV")
    return u.Quantity([edges[0], edges[-1]], "TeV")


def _render(path: Path, name: str, draw: Callable, *args) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=FIGURE_SIZES[name], dpi=DPI)
    FigureCanvasAgg(fig)
    try:
        draw(fig, *args)
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=DPI))
    finally:
        fig.clear()
    return path


def _matplotlib_available() -> bool:
    try:
        import matplotlib  # noqa: F401
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401
        from matplotlib.figure import Figure  # noqa: F401
    except ImportError:
        return False
    return True


# ---- entry point -------------------------------------------------------------------------------------
def write_report(out_dir, dataset, models=None, fit_result=None, flux_points=None, timings=None,
                 reduction=None, source=None, exclusion_region=None,
                 title: str = "gamma_ray_dist run", sky_maps: Mapping | None = None,
                 fitted_models: Any = None, light_curve: Any = None) -> dict[str, Path]:
    """Write the run's figures (PNG) and ``report.md`` into ``out_dir``.

    Parameters
    ----------
    out_dir : str or Path
        Output directory (created if needed). Existing files of the same names are replaced
        atomically.
    dataset : `MapDataset`
        The stacked dataset (``counts`` is required).
    models : `Models`, optional
        Models to predict counts with (default: ``dataset.models``, else ``fit_result.models``). The
        caller's dataset is not modified: the report works on a shallow copy when ``models`` differ.
    fit_result : `FitResult` or dict, optional
        Fit summary (success, message, nfev, total_stat[, covariance_result]).
    flux_points : `FluxPoints`, optional
        Flux points (table in the report, points on the spectrum; their energy range bounds it).
    timings : dict of str to float, optional
        Seconds per run stage.
    reduction : dict, optional
        ``{"observations": [{"obs_id", "status", "counts", "background", "bkg_norm",
        "mask_safe_bins", "error"}, ...]}``; status "ok" or anything else (failed, with ``error``).
    source : str or int, optional
        Name (or index among the non-background models) of the source whose spectrum is shown and
        around which the spectral residuals are taken (default: the first source model).
    fitted_models : `Models`, optional
        The models of the parameters table when they are not the dataset's (a joint fit of
        per-observation datasets shown on their stack: one background model per dataset).
    exclusion_region : region(s) or DS9 string, optional
        Drawn (dashed) on the counts image.
    title : str
        Heading of ``report.md``.
    sky_maps : dict, optional
        What `gamma_ray_dist.pipeline.sky_maps.run_sky_maps` returns (``excess_map``, ``ts_map``,
        ``paths``, ``source_positions``, ``usable``, ``significance``): adds the figures of
        `SKY_MAP_FIGURES` (the TS map's significance, else the excess map's) and a sky-map section.
    light_curve : `FluxPoints`, optional
        A light curve (`LightCurveEstimator`): ``light_curve.png`` and a light-curve table.

    Returns
    -------
    dict of str to Path
        ``{figure name: path}`` for the figures made (names in `FIGURES` and `SKY_MAP_FIGURES`) and
        ``"report"`` for ``report.md``.
    """
    out_dir = Path(out_dir).expanduser()
    out_dir.mkdir(parents=True, exist_ok=True)

    if models is None:
        models = _field(dataset, "models") or _field(fit_result, "models")
    if models is not None and len(_model_list(models)) == 0:
        models = None
    if models is not None and _field(dataset, "models") is not models:
        import copy

        dataset = copy.copy(dataset)  # shares the maps; gets its own models and evaluator cache
        dataset.models = models
        models = dataset.models
    source_model = _find_source(models, source) if models is not None else None
    spectral_model = _field(source_model, "spectral_model")

    have_mpl = _matplotlib_available()
    made: dict[str, Path] = {}
    notes: list[str] = []
    if have_mpl:
        plans: list[tuple[str, Callable, tuple]] = []
        if _field(dataset, "counts") is not None:
            plans.append(("counts", _draw_counts, (dataset, exclusion_region)))
        if models is not None:
            center = _source_position(source_model) or dataset.counts.geom.center_skydir
            from regions import CircleSkyRegion

            region = CircleSkyRegion(center=center, radius=RESIDUAL_REGION_RADIUS)
            if source_model is not None:
                plans.append(("npred_signal", _draw_npred_signal, (dataset,)))
            plans.append(("residuals_spatial", _draw_residuals_spatial, (dataset,)))
            plans.append(("residuals", _draw_residuals, (dataset, region)))
        if spectral_model is not None and (fit_result is not None or flux_points is not None):
            bounds = _energy_bounds(dataset, flux_points)
            plans.append(("spectrum", _draw_spectrum, (spectral_model, bounds, flux_points, source_model.name)))
        map_name, flux_maps = _sky_map_choice(sky_maps or {})
        if flux_maps is not None:
            label = _SKY_MAP_LABELS[map_name]
            positions = list(sky_maps.get("source_positions") or [])
            plans.append(("significance_map", _draw_significance_map, (flux_maps, positions, label)))
            stats = (sky_maps.get("significance") or {}).get(map_name)
            if stats is not None and np.size(stats.get("values", [])):
                plans.append(("significance_distribution", _draw_significance_distribution, (stats, label)))

        pyplot_before = _pyplot_fignums()
        try:
            for name, draw, args in plans:
                try:
                    made[name] = _render(out_dir / f"{name}.png", name, draw, *args)
                except Exception as exc:  # noqa: BLE001 - one bad figure must not lose the report
                    log.warning("report figure %s failed: %s", name, exc, exc_info=True)
                    notes.append(f"`{name}.png` was not made: {type(exc).__name__}: {exc}")
            if light_curve is not None:
                from .light_curve import write_light_curve_figure

                try:
                    made["light_curve"] = write_light_curve_figure(light_curve, out_dir)
                except Exception as exc:  # noqa: BLE001 - one bad figure must not lose the report
                    log.warning("report figure light_curve failed: %s", exc, exc_info=True)
                    notes.append(f"`light_curve.png` was not made: {type(exc).__name__}: {exc}")
        finally:
            _close_new_pyplot_figures(pyplot_before)
    else:
        notes.append(MISSING_PLOT_NOTE)

    text = _markdown(title, dataset, models if fitted_models is None else fitted_models, fit_result, flux_points,
                     timings, reduction, source_model, made, notes, sky_maps, light_curve)
    made["report"] = write_text(out_dir / "report.md", text)
    return made


def _pyplot_fignums():
    plt = sys.modules.get("matplotlib.pyplot")
    return None if plt is None else set(plt.get_fignums())


def _close_new_pyplot_figures(before) -> None:
    """Close pyplot figures a helper may have opened while drawing (none is expected)."""
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is None:
        return
    for num in set(plt.get_fignums()) - (before or set()):
        plt.close(num)


_FIGURE_TITLES = {
    "counts": "Counts",
    "npred_signal": "Predicted counts",
    "residuals_spatial": "Spatial residuals",
    "residuals": "Residuals (spatial and spectral)",
    "spectrum": "Spectrum",
    "significance_map": "Significance map",
    "significance_distribution": "Significance distribution",
    "light_curve": "Light curve",
}


def _markdown(title, dataset, models, fit_result, flux_points, timings, reduction, source_model,
              made, notes, sky_maps=None, light_curve=None) -> str:
    lines = [f"# {title}", ""]
    lines += ["## Dataset", ""] + _dataset_section(dataset) + [""]
    if reduction:
        lines += ["## Data reduction", ""] + _reduction_section(reduction) + [""]
    lines += ["## Fit", ""] + _fit_section(fit_result) + [""]
    rows = _parameter_rows(models)
    if rows:
        lines += ["### Parameters", "",
                  _md_table(["model", "name", "value", "error", "unit", "frozen"], rows), ""]
    if flux_points is not None:
        fp_rows = _flux_points_rows(flux_points)
        if fp_rows:
            source_txt = f" of `{source_model.name}`" if source_model is not None else ""
            lines += [f"## Flux points{source_txt}", "",
                      _md_table(["e_ref [TeV]", f"dnde [{DNDE_UNIT}]", f"dnde_err [{DNDE_UNIT}]",
                                 "ts", "sqrt_ts"], fp_rows), ""]
    if sky_maps:
        lines += ["## Sky maps", ""] + _sky_maps_section(sky_maps) + [""]
    if light_curve is not None:
        lines += ["## Light curve", ""] + _light_curve_section(light_curve) + [""]
    lines += ["## Figures", ""]
    all_figures = FIGURES + SKY_MAP_FIGURES + LIGHT_CURVE_FIGURES
    for name in all_figures:
        if name in made:
            lines += [f"### {_FIGURE_TITLES[name]}", "", f"![{name}]({made[name].name})", ""]
    if not any(name in made for name in all_figures) and not notes:
        lines += ["No figures were made.", ""]
    for note in notes:
        lines += [f"> {note}", ""]
    if timings:
        lines += ["## Timings", ""] + _timings_section(timings) + [""]
    return "\n".join(lines).rstrip() + "\n"
