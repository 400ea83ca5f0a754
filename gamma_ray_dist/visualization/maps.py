"""Sky images of `WcsNDMap`: WCSAxes images with a stretch and colour bar, and image grids."""
from __future__ import annotations

import numpy as np
from astropy import units as u

from ._mpl import pyplot

__all__ = ["plot_map", "plot_grid", "add_colorbar", "format_sky_axes", "sky_axes", "bin_label"]

STRETCHES = ("linear", "sqrt", "log", "asinh", "sinh", "power")
_FRAME_LABELS = {
    "icrs": ("Right Ascension", "Declination"),
    "fk5": ("Right Ascension", "Declination"),
    "galactic": ("Galactic Longitude", "Galactic Latitude"),
}


def sky_axes(geom, ax=None, fig=None, subplot=(1, 1, 1)):
    """``ax`` if given, else a new WCSAxes of ``geom``'s 2D WCS added to ``fig`` (current figure)."""
    if ax is not None:
        return ax
    plt = pyplot()
    fig = plt.gcf() if fig is None else fig
    kwargs = {"projection": geom.to_image().wcs}
    if geom.projection in ("AIT", "MOL"):
        from astropy.visualization.wcsaxes.frame import EllipticalFrame

        kwargs["frame_class"] = EllipticalFrame
    return fig.add_subplot(*subplot, **kwargs)


def format_sky_axes(ax, frame: str):
    """Coordinate labels by frame on a WCSAxes (no-op on plain axes)."""
    coords = getattr(ax, "coords", None)
    if coords is None:
        return ax
    xlabel, ylabel = _FRAME_LABELS.get(str(frame).lower(), ("Longitude", "Latitude"))
    coords[0].set_axislabel(xlabel)
    coords[1].set_axislabel(ylabel)
    return ax


def add_colorbar(img, ax, axes_loc=None, **kwargs):
    """Colour bar in an axes appended beside ``ax`` (works for WCSAxes and plain axes)."""
    plt = pyplot()
    from matplotlib.axes import Axes
    from mpl_toolkits.axes_grid1 import make_axes_locatable

    loc = {"position": "right", "size": "5%", "pad": "2%"}
    loc.update(axes_loc or {})
    cax = make_axes_locatable(ax).append_axes(axes_class=Axes, **loc)
    return plt.colorbar(img, cax=cax, **kwargs)


def _image_data(m) -> np.ndarray:
    geom = m.geom
    data = np.asarray(m.data)
    if not geom.is_image:
        if any(n != 1 for n in geom.data_shape[:-2]):
            raise TypeError(
                f"plot_map draws 2D images; this map has non-spatial axes {geom.axes.names} with shape "
                f"{geom.data_shape[:-2]}: use plot_grid(map), or reduce it first (e.g. map.sum_over_axes())"
            )
        data = data.reshape(geom.data_shape[-2:])
    return data.astype(float)


def plot_map(m, ax=None, fig=None, add_cbar: bool = False, stretch: str = "linear", axes_loc=None,
             kwargs_colorbar=None, **kwargs):
    """Plot a 2D `WcsNDMap` (or one with length-1 non-spatial axes) on WCS axes, as gammapy's
    ``WcsNDMap.plot``.

    Parameters
    ----------
    m : `WcsNDMap`
        The map.
    ax : `~astropy.visualization.wcsaxes.WCSAxes`, optional
        Axes to draw on; default: a new WCSAxes (the map's WCS) in ``fig``.
    fig : `~matplotlib.figure.Figure`, optional
        Figure for the new axes (default: the current figure).
    add_cbar : bool
        Add a colour bar labelled with the map unit.
    stretch : {"linear", "sqrt", "log", "asinh", ...}
        Colour stretch (`astropy.visualization.simple_norm`); ``vmin``/``vmax`` kwargs set the cuts.
    axes_loc : dict, optional
        Colour-bar placement (``position``, ``size``, ``pad``).
    kwargs_colorbar : dict, optional
        Passed to ``colorbar``.
    **kwargs
        Passed to ``imshow`` (``cmap`` default "afmhot", ``interpolation`` "nearest", ``origin`` "lower").

    Returns
    -------
    ax : WCSAxes
    """
    pyplot()  # clear ImportError first when matplotlib is missing
    from astropy.visualization import simple_norm

    if stretch not in STRETCHES:
        raise ValueError(f"stretch must be one of {STRETCHES}, got {stretch!r}")
    data = _image_data(m)
    ax = sky_axes(m.geom, ax=ax, fig=fig)
    kwargs.setdefault("interpolation", "nearest")
    kwargs.setdefault("origin", "lower")
    kwargs.setdefault("cmap", "afmhot")
    is_mask = np.asarray(m.data).dtype == bool
    if is_mask:
        from matplotlib.colors import ListedColormap

        kwargs.setdefault("vmin", 0)
        kwargs.setdefault("vmax", 1)
        kwargs["cmap"] = ListedColormap(["black", "white"])
    finite = np.isfinite(data)
    vmin, vmax = kwargs.pop("vmin", None), kwargs.pop("vmax", None)
    if "norm" not in kwargs and finite.any():
        kwargs["norm"] = simple_norm(data[finite], stretch, vmin=vmin, vmax=vmax)
    elif "norm" not in kwargs:
        kwargs.update(vmin=vmin, vmax=vmax)
    img = ax.imshow(data, **kwargs)
    if add_cbar:
        kwargs_colorbar = dict(kwargs_colorbar or {})
        kwargs_colorbar.setdefault("label", u.Unit(m.unit).to_string())
        add_colorbar(img, ax=ax, axes_loc=axes_loc, **kwargs_colorbar)
    format_sky_axes(ax, m.geom.frame)
    ax.autoscale(enable=False)  # keep the image limits when overlaying markers/regions
    return ax


def bin_label(axis, idx: int) -> str:
    """Label of bin ``idx`` of a `MapAxis`, e.g. ``"1.00 TeV - 1.78 TeV"``."""
    unit = u.Unit(axis.unit)
    unit_str = f" {unit.to_string()}" if unit != u.dimensionless_unscaled else ""
    if axis.node_type == "edges":
        lo = u.Quantity(axis.edges_min[idx], unit).value
        hi = u.Quantity(axis.edges_max[idx], unit).value
        return f"{lo:.3g}{unit_str} - {hi:.3g}{unit_str}"
    return f"{u.Quantity(axis.center[idx], unit).value:.3g}{unit_str}"


def plot_grid(m, ncols: int = 3, figsize=None, add_cbar: bool = True, stretch: str = "linear", **kwargs):
    """One image per bin of the non-spatial axes (e.g. per energy band) on a grid of WCSAxes.

    Parameters
    ----------
    m : `WcsNDMap`
        Map with at least one non-spatial axis.
    ncols : int
        Panels per row.
    figsize : tuple, optional
        Figure size (default: 4 inches per panel).
    add_cbar, stretch, **kwargs
        Passed to `plot_map` for every panel.

    Returns
    -------
    axes : list of WCSAxes
    """
    plt = pyplot()
    geom = m.geom
    if geom.is_image:
        return [plot_map(m, add_cbar=add_cbar, stretch=stretch, **kwargs)]
    shape = geom.data_shape[:-2]
    planes = list(np.ndindex(shape))
    ncols = max(1, min(int(ncols), len(planes)))
    nrows = int(np.ceil(len(planes) / ncols))
    fig = plt.figure(figsize=figsize or (4.2 * ncols, 4 * nrows))
    axes = []
    data = np.asarray(m.data)
    axes_by_data = list(geom.axes)[::-1]  # data axes order is the reverse of geom.axes
    image_geom = geom.to_image()
    for k, index in enumerate(planes):
        ax = sky_axes(image_geom, fig=fig, subplot=(nrows, ncols, k + 1))
        image = type(m)(image_geom, data=data[index], unit=m.unit)
        plot_map(image, ax=ax, add_cbar=add_cbar, stretch=stretch, **dict(kwargs))
        title = ", ".join(bin_label(axis, i) for axis, i in zip(axes_by_data, index))
        ax.set_title(title, fontsize="medium")
        axes.append(ax)
    return axes
