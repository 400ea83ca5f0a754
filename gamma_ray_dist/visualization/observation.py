"""Quick-look plots of an observation: IRFs and events (as gammapy's ``Observation.peek``)."""
from __future__ import annotations

import numpy as np
from astropy import units as u

from ._mpl import gca, pyplot
from .maps import add_colorbar, plot_map

__all__ = [
    "peek_observation",
    "plot_aeff",
    "plot_background_rate",
    "plot_edisp",
    "plot_psf_containment",
    "events_counts_image",
    "plot_events_image",
    "plot_events_energy",
]

DEFAULT_OFFSETS = (0.0, 0.5, 1.0, 1.5, 2.0)


def _label(ax, xlabel, ylabel, title=None):
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)


def plot_aeff(aeff, ax=None, offsets=DEFAULT_OFFSETS, **kwargs):
    """Effective area versus true energy, one curve per FoV offset (deg)."""
    ax = gca(ax)
    e_edges = aeff.axes["energy_true"].edges
    energy = np.geomspace(e_edges[0], e_edges[-1], 100)
    for offset in np.atleast_1d(u.Quantity(offsets, "deg").value):
        values = aeff.evaluate_values(energy_true=energy, offset=np.full_like(energy, offset))
        ax.plot(energy, values, label=f"offset = {offset:.1f} deg", **kwargs)
    ax.set_xscale("log")
    _label(ax, "True energy [TeV]", "Effective area [m$^2$]", "Effective area")
    ax.legend(fontsize="small")
    return ax


def background_rate_vs_offset(bkg, offsets_deg: np.ndarray, energy_tev: np.ndarray, n_phi: int = 36):
    """Background rate (s-1 TeV-1 sr-1) on the (energy, offset) grid; a 3D background is averaged over
    the azimuth of the FoV (as gammapy's ``Background3D.to_2d``)."""
    e = np.asarray(energy_tev, float).reshape(-1, 1)
    off = np.asarray(offsets_deg, float).reshape(1, -1)
    if "offset" in bkg.axes.names:
        return bkg.evaluate_values(energy=e, offset=off)
    phi = np.linspace(0, 2 * np.pi, n_phi, endpoint=False).reshape(1, 1, -1)
    values = bkg.evaluate_values(energy=e[..., None], fov_lon=off[..., None] * np.cos(phi),
                                 fov_lat=off[..., None] * np.sin(phi))
    return values.mean(axis=-1)


def _offset_max(bkg) -> float:
    if "offset" in bkg.axes.names:
        return float(bkg.axes["offset"].edges[-1])
    return float(min(np.abs(bkg.axes["fov_lon"].edges).max(), np.abs(bkg.axes["fov_lat"].edges).max()))


def plot_background_rate(bkg, ax=None, add_cbar: bool = True, **kwargs):
    """Background rate as an image of reconstructed energy versus FoV offset (log colour scale)."""
    ax = gca(ax)
    from matplotlib.colors import LogNorm

    e_edges = np.asarray(bkg.axes["energy"].edges, float)
    e_edges = e_edges[e_edges > 0]
    off_edges = np.linspace(0, _offset_max(bkg), 41)
    e_center = np.sqrt(e_edges[:-1] * e_edges[1:])
    rate = background_rate_vs_offset(bkg, 0.5 * (off_edges[:-1] + off_edges[1:]), e_center)
    positive = rate[rate > 0]
    if positive.size and "norm" not in kwargs:
        # below threshold the tables hold near-zero rates (1e-30): show 8 decades under the maximum
        vmax = positive.max()
        kwargs["norm"] = LogNorm(vmin=max(positive.min(), 1e-8 * vmax), vmax=vmax, clip=True)
    rate = np.where(rate > 0, rate, np.nan)
    mesh = ax.pcolormesh(e_edges, off_edges, rate.T, **kwargs)
    ax.set_xscale("log")
    _label(ax, "Energy [TeV]", "Offset [deg]", "Background rate")
    if add_cbar:
        add_colorbar(mesh, ax=ax, label="Background rate [s$^{-1}$ TeV$^{-1}$ sr$^{-1}$]")
    return ax


def plot_edisp(edisp, ax=None, offset=0.5, add_cbar: bool = True, **kwargs):
    """Migration (E_reco / E_true) probability density versus true energy at one FoV offset (deg)."""
    ax = gca(ax)
    offset = float(u.Quantity(offset, "deg").value)
    e_axis, m_axis = edisp.axes["energy_true"], edisp.axes["migra"]
    pdf = edisp.migra_pdf_values(np.array([offset]), e_axis.center)[..., 0]  # (n_e, n_migra)
    kwargs.setdefault("cmap", "viridis")
    positive = pdf[pdf > 0]
    if positive.size and "norm" not in kwargs:
        from matplotlib.colors import PowerNorm

        # sqrt stretch, top at the 99.5th percentile: sparse spikes at low energy would hide the diagonal
        kwargs["norm"] = PowerNorm(0.5, vmin=0, vmax=np.percentile(positive, 99.5), clip=True)
    mesh = ax.pcolormesh(e_axis.edges, m_axis.edges, pdf.T, **kwargs)
    ax.axhline(1.0, color="white", lw=0.5, ls="--")
    ax.set_xscale("log")
    _label(ax, "True energy [TeV]", "Migra (E_reco / E_true)", f"Energy dispersion (offset {offset:.1f} deg)")
    if add_cbar:
        add_colorbar(mesh, ax=ax, label="Probability density")
    return ax


def plot_psf_containment(psf, ax=None, fractions=(0.68, 0.95), offsets=(0.0, 1.0), **kwargs):
    """PSF containment radius versus true energy for several fractions and FoV offsets (deg)."""
    ax = gca(ax)
    e_axis = psf.axes["energy_true"]
    energy = np.asarray(e_axis.center, float)
    for offset in np.atleast_1d(u.Quantity(offsets, "deg").value):
        for fraction in fractions:
            radius = psf.containment_radius_values(fraction, energy, np.full_like(energy, offset))
            ax.plot(energy, radius, label=f"{100 * fraction:.0f}% containment, offset {offset:.1f} deg",
                    **kwargs)
    ax.set_xscale("log")
    _label(ax, "True energy [TeV]", "Containment radius [deg]", "Point spread function")
    ax.legend(fontsize="small")
    return ax


def events_counts_image(events, width=None, binsz=None, center=None, max_pixels=200):
    """Counts image (`WcsNDMap`, icrs, CAR) of the events around the pointing.

    ``width`` (deg) defaults to twice the 99th percentile of the event offsets from the centre (a
    few stray events far outside the field of view would otherwise stretch the image over tens of
    degrees); ``binsz`` (deg) defaults to 0.02, coarser when the image would exceed ``max_pixels``
    on a side, so that the events stay visible.
    """
    from ..maps import Map, WcsGeom, angular_separation

    center = events.pointing_radec if center is None else center
    arrays = events.arrays(("RA", "DEC"))
    ra, dec = arrays["RA"], arrays["DEC"]
    if width is None:
        c = center.icrs
        sep = np.degrees(angular_separation(c.ra.deg, c.dec.deg, ra, dec)) if ra.size else np.zeros(1)
        width = 2 * float(np.quantile(sep, 0.99)) + 0.1
    width = float(u.Quantity(width, "deg").value)
    if binsz is None:
        binsz = max(0.02, width / max_pixels)
    binsz = float(u.Quantity(binsz, "deg").value)
    geom = WcsGeom.create(skydir=center, width=width, binsz=binsz, frame="icrs", proj="CAR")
    x, y = geom.wcs.wcs_world2pix(ra, dec, 0)
    ny, nx = geom.data_shape[-2:]
    counts, _, _ = np.histogram2d(y, x, bins=(ny, nx), range=((-0.5, ny - 0.5), (-0.5, nx - 0.5)))
    return Map.from_geom(geom, data=counts.astype("float32"))


def plot_events_image(events, ax=None, fig=None, width=None, binsz=None, **kwargs):
    """Counts image of the events around the pointing (sqrt stretch, colour bar), on WCS axes."""
    image = events_counts_image(events, width=width, binsz=binsz)
    kwargs.setdefault("stretch", "sqrt")
    kwargs.setdefault("vmin", 0)
    kwargs.setdefault("add_cbar", True)
    ax = plot_map(image, ax=ax, fig=fig, **kwargs)
    ax.set_title("Events")
    return ax


def plot_events_energy(events, ax=None, energy_edges=None, **kwargs):
    """Histogram of the reconstructed event energies (log bins, log counts)."""
    ax = gca(ax)
    energy = np.asarray(events.arrays(("ENERGY",))["ENERGY"], float)
    energy = energy[np.isfinite(energy) & (energy > 0)]
    if energy_edges is None:
        lo, hi = (energy.min(), energy.max()) if energy.size else (0.1, 100.0)
        energy_edges = np.geomspace(lo, hi * 1.0001, 41)
    else:
        energy_edges = u.Quantity(energy_edges, "TeV").value
    kwargs.setdefault("histtype", "step")
    kwargs.setdefault("color", "black")
    ax.hist(energy, bins=energy_edges, **kwargs)
    ax.set_xscale("log")
    ax.set_yscale("log", nonpositive="clip")
    _label(ax, "Energy [TeV]", "Counts", f"Events energy ({energy.size} events)")
    return ax


def peek_observation(observation, figsize=(15, 10)):
    """Six-panel quick look: events image, event energies, effective area, background rate, energy
    dispersion and PSF containment. Missing parts leave an empty panel saying so.

    Returns
    -------
    fig : `~matplotlib.figure.Figure`
    """
    plt = pyplot()
    fig = plt.figure(figsize=figsize)
    fig.subplots_adjust(wspace=0.45, hspace=0.35)
    nrows, ncols = 2, 3
    available = set(getattr(observation, "available_hdus", ["events", "aeff", "edisp", "psf", "bkg"]))

    def panel(idx, name):
        ax = fig.add_subplot(nrows, ncols, idx)
        if name not in available or getattr(observation, name) is None:
            ax.text(0.5, 0.5, f"no {name}", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
            return None
        return ax

    if "events" in available and observation.events is not None:
        image = events_counts_image(observation.events)
        ax = fig.add_subplot(nrows, ncols, 1, projection=image.geom.wcs)
        plot_map(image, ax=ax, stretch="sqrt", vmin=0, add_cbar=True)
        # tick labels below and left only: the top ones ran into the title
        ax.coords[0].set_ticklabel_position("b")
        ax.coords[0].set_axislabel_position("b")
        ax.coords[1].set_ticklabel_position("l")
        ax.coords[1].set_axislabel_position("l")
        ax.set_title(f"Events (obs {observation.obs_id})")
    else:
        panel(1, "events")
    ax = panel(2, "events")
    if ax is not None:
        plot_events_energy(observation.events, ax=ax)
    ax = panel(3, "aeff")
    if ax is not None:
        plot_aeff(observation.aeff, ax=ax)
    ax = panel(4, "bkg")
    if ax is not None:
        plot_background_rate(observation.bkg, ax=ax)
    ax = panel(5, "edisp")
    if ax is not None:
        plot_edisp(observation.edisp, ax=ax)
    ax = panel(6, "psf")
    if ax is not None:
        plot_psf_containment(observation.psf, ax=ax)
    return fig
