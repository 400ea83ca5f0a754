"""Non-spatial map axes: :class:`MapAxis` (one binned coordinate) and :class:`MapAxes` (an ordered set).

An axis is a monotonic array of nodes that are either bin edges or bin centers. Pixel coordinates of
bin ``i`` run from ``i - 0.5`` to ``i + 0.5``; the axis <-> pixel transform is piecewise linear in the
interpolation space of ``interp`` (lin, log or sqrt), exactly as in gammapy's ``MapAxis``.
`MapAxes` also writes and reads gammapy's ``BANDS`` table (one row per bin; ``CHANNEL``, then per axis
a center and min/max columns, ``ENERGY, E_MIN, E_MAX`` for the reconstructed energy,
``NAME, NAME_MIN, NAME_MAX`` otherwise).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from astropy import units as u
from astropy.io import fits
from astropy.table import Table

from .errors import MapError, MapFormatError
from .scale import INTERP_CHOICES, interp1d_extrapolate, scale_inverse, scale_values

__all__ = ["MapAxis", "MapAxes"]

ENERGY_NAMES = ("energy", "energy_true")


class MapAxis:
    """A binned non-spatial map axis.

    Parameters
    ----------
    nodes : array-like or `~astropy.units.Quantity`
        Node values, bin edges (``node_type="edges"``) or centers (``node_type="center"``); sorted.
    interp : {"lin", "log", "sqrt"}
        Interpolation space between axis and pixel coordinates.
    name : str
        Axis name (e.g. "energy", "energy_true", "rad", "migra").
    node_type : {"edges", "center"}
        Meaning of ``nodes``.
    unit : str or `~astropy.units.Unit`
        Unit of the nodes, ignored when ``nodes`` is a Quantity.
    """

    def __init__(self, nodes, interp: str = "lin", name: str = "", node_type: str = "edges", unit=""):
        if not isinstance(name, str):
            raise MapError(f"axis name must be a string, got {type(name).__name__}")
        if isinstance(nodes, u.Quantity):
            unit = nodes.unit
            nodes = nodes.value
        nodes = np.atleast_1d(np.asarray(nodes, dtype=float))
        if nodes.ndim != 1:
            raise MapError(f"axis nodes must be 1D, got shape {nodes.shape}")
        if len(np.unique(nodes)) != nodes.size:
            raise MapError(f"axis {name!r}: node values must be unique")
        if not (np.all(np.diff(nodes) > 0) or np.all(np.diff(nodes) < 0)):
            raise MapError(f"axis {name!r}: node values must be sorted")
        if interp not in INTERP_CHOICES:
            raise MapError(f"axis {name!r}: interp must be one of {INTERP_CHOICES}, got {interp!r}")
        if interp != "lin" and np.any(nodes < 0):
            raise MapError(f"axis {name!r}: interp {interp!r} needs non-negative nodes")
        if node_type == "edges":
            if nodes.size < 2:
                raise MapError(f"axis {name!r}: edges need at least two values")
            self._pix_offset, self._nbin = -0.5, nodes.size - 1
        elif node_type == "center":
            self._pix_offset, self._nbin = 0.0, nodes.size
        else:
            raise MapError(f"node_type must be 'edges' or 'center', got {node_type!r}")
        self._nodes = nodes
        self._interp = interp
        self._name = name
        self._node_type = node_type
        self._unit = u.Unit(unit)
        self._edges = None
        self._center = None

    # -- constructors -----------------------------------------------------------------------------
    @classmethod
    def from_bounds(cls, lo_bnd: float, hi_bnd: float, nbin: int, **kwargs) -> "MapAxis":
        """Axis of ``nbin`` bins between two bounds, evenly spaced in the ``interp`` space."""
        nbin = int(nbin)
        interp = kwargs.setdefault("interp", "lin")
        node_type = kwargs.setdefault("node_type", "edges")
        if isinstance(lo_bnd, u.Quantity) or isinstance(hi_bnd, u.Quantity):
            unit = kwargs.get("unit") or (hi_bnd.unit if isinstance(hi_bnd, u.Quantity) else lo_bnd.unit)
            lo_bnd, hi_bnd = u.Quantity(lo_bnd, unit).value, u.Quantity(hi_bnd, unit).value
            kwargs["unit"] = unit
        nnode = nbin + 1 if node_type == "edges" else nbin
        if interp == "lin":
            nodes = np.linspace(lo_bnd, hi_bnd, nnode)
        elif interp == "log":
            nodes = np.geomspace(lo_bnd, hi_bnd, nnode)
        elif interp == "sqrt":
            nodes = np.linspace(lo_bnd**0.5, hi_bnd**0.5, nnode) ** 2.0
        else:
            raise MapError(f"interp must be one of {INTERP_CHOICES}, got {interp!r}")
        return cls(nodes, **kwargs)

    @classmethod
    def from_edges(cls, edges, **kwargs) -> "MapAxis":
        """Axis from bin edges (at least two)."""
        if len(edges) < 2:
            raise MapError("edges array must have at least two elements")
        if isinstance(edges, u.Quantity) and kwargs.get("unit") is not None:
            edges = edges.to(kwargs["unit"])
        if kwargs.get("unit") is None:
            kwargs.pop("unit", None)
        return cls(edges, node_type="edges", **kwargs)

    @classmethod
    def from_nodes(cls, nodes, **kwargs) -> "MapAxis":
        """Axis from bin centers (at least one)."""
        if len(nodes) < 1:
            raise MapError("nodes array must have at least one element")
        if kwargs.get("unit") is None:
            kwargs.pop("unit", None)
        return cls(nodes, node_type="center", **kwargs)

    @classmethod
    def from_energy_edges(cls, energy_edges, unit=None, name: str | None = None,
                          interp: str = "log") -> "MapAxis":
        """Energy axis from edges (Quantity or floats with ``unit``)."""
        energy_edges = u.Quantity(energy_edges, unit)
        if not energy_edges.unit.is_equivalent("TeV"):
            raise MapError(f"energy edges need an energy unit, got {energy_edges.unit!r}")
        name = "energy" if name is None else name
        if name not in ENERGY_NAMES:
            raise MapError(f"energy axis name must be one of {ENERGY_NAMES}, got {name!r}")
        return cls.from_edges(energy_edges, unit=unit, interp=interp, name=name)

    @classmethod
    def from_energy_bounds(cls, energy_min, energy_max, nbin: int, unit=None, per_decade: bool = False,
                           name: str | None = None, node_type: str = "edges",
                           strict_bounds: bool = True) -> "MapAxis":
        """Log-spaced energy axis between two energies (Quantities, or floats with ``unit``)."""
        energy_min = u.Quantity(energy_min, unit)
        energy_max = u.Quantity(energy_max, unit)
        if unit is None:
            unit = energy_max.unit
            energy_min = energy_min.to(unit)
        if not energy_max.unit.is_equivalent("TeV"):
            raise MapError(f"energy bounds need an energy unit, got {energy_max.unit!r}")
        if per_decade:
            ndecade = np.log10((energy_max / energy_min).to_value(""))
            if strict_bounds:
                nbin = np.ceil(ndecade * nbin)
            else:
                per = nbin
                nbin = np.floor(ndecade * per)
                if ndecade % (1 / per) != 0:
                    energy_max = energy_min * 10 ** (nbin / per)
        name = "energy" if name is None else name
        if name not in ENERGY_NAMES:
            raise MapError(f"energy axis name must be one of {ENERGY_NAMES}, got {name!r}")
        return cls.from_bounds(energy_min.value, u.Quantity(energy_max, unit).value, nbin=nbin, unit=unit,
                               interp="log", name=name, node_type=node_type)

    # -- properties -------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._name

    @property
    def unit(self) -> u.Unit:
        return self._unit

    @property
    def interp(self) -> str:
        return self._interp

    @property
    def node_type(self) -> str:
        return self._node_type

    @property
    def nbin(self) -> int:
        return self._nbin

    @property
    def is_energy_axis(self) -> bool:
        return self._name in ENERGY_NAMES

    @property
    def edges_values(self) -> np.ndarray:
        """Bin edges as a plain float64 array in ``unit`` (hot-path form of :attr:`edges`)."""
        if self._edges is None:
            self._edges = self._pix_to_values(np.arange(self._nbin + 1, dtype=float) - 0.5)
        return self._edges

    @property
    def center_values(self) -> np.ndarray:
        """Bin centers as a plain float64 array in ``unit``."""
        if self._center is None:
            self._center = self._pix_to_values(np.arange(self._nbin, dtype=float))
        return self._center

    @property
    def edges(self) -> u.Quantity:
        return u.Quantity(self.edges_values, self._unit, copy=True)

    @property
    def edges_min(self) -> u.Quantity:
        return self.edges[:-1]

    @property
    def edges_max(self) -> u.Quantity:
        return self.edges[1:]

    @property
    def center(self) -> u.Quantity:
        return u.Quantity(self.center_values, self._unit, copy=True)

    @property
    def bin_width(self) -> u.Quantity:
        return np.diff(self.edges)

    @property
    def bounds(self) -> u.Quantity:
        values = self.edges if self._node_type == "edges" else self.center
        return values[[0, -1]]

    # -- transforms -------------------------------------------------------------------------------
    def _pix_to_values(self, pix) -> np.ndarray:
        x = np.arange(self._nodes.size, dtype=float)
        scaled = interp1d_extrapolate(x, scale_values(self._nodes, self._interp),
                                      np.asarray(pix, dtype=float) - self._pix_offset)
        return np.asarray(scale_inverse(scaled, self._interp), dtype=float)

    def _to_values(self, coord) -> np.ndarray:
        if isinstance(coord, u.Quantity):
            return coord.to_value(self._unit)
        return np.asarray(coord, dtype=float)

    def pix_to_coord(self, pix) -> u.Quantity:
        """Pixel coordinates to axis coordinates (Quantity in ``unit``)."""
        return u.Quantity(self._pix_to_values(pix), self._unit, copy=None)

    def coord_to_pix(self, coord) -> np.ndarray:
        """Axis coordinates (Quantity, or floats in ``unit``) to float pixel coordinates."""
        values = self._to_values(coord)
        x = scale_values(self._nodes, self._interp)
        pix = interp1d_extrapolate(x, np.arange(self._nodes.size, dtype=float),
                                   scale_values(values, self._interp))
        return np.array(pix + self._pix_offset, ndmin=1)

    def coord_to_idx(self, coord, clip: bool = False) -> np.ndarray:
        """Bin index of each coordinate; -1 outside the axis unless ``clip``."""
        values = np.array(self._to_values(coord), ndmin=1, dtype=float)
        edges = self.edges_values
        idx = np.digitize(values, edges) - 1
        if clip:
            idx = np.clip(idx, 0, self._nbin - 1)
        else:
            with np.errstate(invalid="ignore"):
                idx[values > edges[-1]] = -1
        idx[~np.isfinite(values)] = -1
        return idx

    def pix_to_idx(self, pix, clip: bool = False) -> np.ndarray:
        """Integer pixel to index; -1 outside unless ``clip``."""
        if clip:
            return np.clip(pix, 0, self._nbin - 1)
        return np.where((pix < 0) | (pix >= self._nbin), -1, pix)

    # -- derived axes -----------------------------------------------------------------------------
    def slice(self, idx: slice) -> "MapAxis":
        """Sub-axis of the bins selected by ``idx`` (a slice)."""
        sel = np.arange(self._nbin)[idx]
        if sel.size == 0:
            raise MapError(f"slice {idx!r} selects no bin of axis {self._name!r}")
        if self._node_type == "edges":
            sel = np.append(sel, sel[-1] + 1)
        return MapAxis(self._nodes[sel], interp=self._interp, name=self._name,
                       node_type=self._node_type, unit=self._unit)

    def squash(self) -> "MapAxis":
        """One-bin axis spanning the whole axis."""
        edges = self.edges_values
        return MapAxis.from_bounds(edges[0], edges[-1], nbin=1, interp=self._interp, name=self._name,
                                   unit=self._unit)

    def copy(self, **kwargs) -> "MapAxis":
        """Copy, overriding any of ``nodes, interp, name, node_type, unit``."""
        args = dict(nodes=self._nodes.copy(), interp=self._interp, name=self._name,
                    node_type=self._node_type, unit=self._unit)
        args.update(kwargs)
        return MapAxis(**args)

    def rename(self, new_name: str) -> "MapAxis":
        return self.copy(name=new_name)

    def assert_name(self, required_name: str) -> None:
        if self._name != required_name:
            raise MapError(f'unexpected axis name, expected "{required_name}", got "{self._name}"')

    # -- comparison -------------------------------------------------------------------------------
    def is_allclose(self, other, **kwargs) -> bool:
        """Same edges (np.allclose with ``kwargs``), node type, interp and name (case-insensitive)."""
        if not isinstance(other, MapAxis):
            return False
        if self.edges_values.shape != other.edges_values.shape:
            return False
        if not self._unit.is_equivalent(other.unit):
            return False
        return bool(np.allclose(self.edges_values, other.edges_values, **kwargs)
                    and self._node_type == other.node_type and self._interp == other.interp
                    and self._name.upper() == other.name.upper())

    def __eq__(self, other) -> bool:
        return isinstance(other, MapAxis) and self.is_allclose(other, rtol=1e-6, atol=1e-6)

    def __ne__(self, other) -> bool:
        return not self.__eq__(other)

    __hash__ = object.__hash__

    def is_aligned(self, other: "MapAxis", atol: float = 2e-2) -> bool:
        """True if the other axis' centers fall on integer pixels of this one (same interp)."""
        pix = self.coord_to_pix(other.center)
        return bool(np.allclose(np.round(pix) - pix, 0, atol=atol)) and self._interp == other.interp

    def __repr__(self) -> str:
        vals = self.edges_values if self._node_type == "edges" else self.center_values
        return (f"MapAxis(name={self._name!r}, nbin={self._nbin}, node_type={self._node_type!r}, "
                f"interp={self._interp!r}, unit={self._unit.to_string()!r}, "
                f"range=[{vals.min():.3g}, {vals.max():.3g}])")

    # -- FITS (gadf BANDS table) ------------------------------------------------------------------
    def _column_names(self) -> tuple[str, str, str]:
        name = self._name.upper()
        if name == "ENERGY":
            return "ENERGY", "E_MIN", "E_MAX"
        return name, name + "_MIN", name + "_MAX"

    def axcols(self) -> str:
        """Value of the ``AXCOLSi`` header keyword of this axis."""
        ctr, lo, hi = self._column_names()
        return f"{lo},{hi}" if self._node_type == "edges" else ctr


class MapAxes(Sequence):
    """Ordered, uniquely named set of :class:`MapAxis` (the non-spatial axes of a geometry)."""

    def __init__(self, axes, n_spatial_axes: int | None = None):
        axes = list(axes)
        names = [ax.name for ax in axes]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise MapError(f"axis names must be unique, got {sorted(dup)} more than once")
        self._axes = axes
        self._n_spatial_axes = n_spatial_axes

    @classmethod
    def from_default(cls, axes, n_spatial_axes: int | None = None) -> "MapAxes":
        """MapAxes from a list of axes or edge arrays; unnamed axes become ``axis{i}``."""
        if axes is None:
            return cls([], n_spatial_axes)
        out = []
        for idx, ax in enumerate(axes):
            if isinstance(ax, np.ndarray):
                ax = MapAxis(ax)
            if not isinstance(ax, MapAxis):
                raise MapError(f"axes must be MapAxis instances, got {type(ax).__name__}")
            if ax.name == "":
                ax = ax.copy(name=f"axis{idx}")
            out.append(ax)
        return cls(out, n_spatial_axes)

    def __len__(self) -> int:
        return len(self._axes)

    def __getitem__(self, idx):
        if isinstance(idx, (int, np.integer)):
            return self._axes[idx]
        if isinstance(idx, str):
            for ax in self._axes:
                if ax.name == idx:
                    return ax
            raise KeyError(f"axis {idx!r} not in axes {self.names}")
        if isinstance(idx, slice):
            return MapAxes(self._axes[idx])
        if isinstance(idx, list):
            return MapAxes([self[name] for name in idx])
        raise TypeError(f"invalid axis index type {type(idx).__name__}")

    def __add__(self, other) -> "MapAxes":
        return MapAxes(list(self) + list(other))

    @property
    def names(self) -> list[str]:
        return [ax.name for ax in self._axes]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(ax.nbin for ax in self._axes)

    def index(self, axis_name: str) -> int:
        return self.names.index(axis_name)

    def index_data(self, axis_name: str) -> int:
        """Position of the axis in a data array (axes are stored reversed)."""
        return len(self) - self.index(axis_name) - 1

    def coord_to_idx(self, coord, clip: bool = True) -> tuple:
        return tuple(ax.coord_to_idx(coord[ax.name], clip=clip) for ax in self)

    def coord_to_pix(self, coord) -> tuple:
        return tuple(ax.coord_to_pix(coord[ax.name]) for ax in self)

    def pix_to_coord(self, pix) -> tuple:
        return tuple(ax.pix_to_coord(p) for ax, p in zip(self, pix))

    def pix_to_idx(self, pix, clip: bool = False) -> tuple:
        return tuple(ax.pix_to_idx(p, clip=clip) for ax, p in zip(self, pix))

    def slice_by_idx(self, slices: dict) -> "MapAxes":
        """Slice axes by name; an integer index drops the axis."""
        out = []
        for ax in self:
            sl = slices.get(ax.name, slice(None))
            if isinstance(sl, slice):
                out.append(ax.slice(sl))
        return MapAxes(out)

    def squash(self, axis_name: str) -> "MapAxes":
        return MapAxes([ax.squash() if ax.name == axis_name else ax.copy() for ax in self])

    def drop(self, axis_name: str) -> "MapAxes":
        return MapAxes([ax for ax in self if ax.name != axis_name])

    def replace(self, axis: MapAxis) -> "MapAxes":
        if axis.name not in self.names:
            raise MapError(f"no axis named {axis.name!r} to replace in {self.names}")
        return MapAxes([axis if ax.name == axis.name else ax for ax in self])

    def assert_names(self, required_names, allow_extra: bool = False) -> None:
        names = self.names
        ok = names[: len(required_names)] == list(required_names)
        if not ok or (not allow_extra and len(names) != len(required_names)):
            raise MapError(f"incorrect axis order or names: expected {list(required_names)}, got {names}")

    def get_coord(self, mode: str = "center", axis_name: str | None = None) -> dict:
        """Axis centers (or edges for ``axis_name`` with mode="edges"), reshaped to broadcast."""
        coords = {}
        for idx, ax in enumerate(self):
            shape = [1] * len(self)
            shape[idx] = -1
            if self._n_spatial_axes:
                shape = shape[::-1] + [1] * self._n_spatial_axes
            values = ax.edges if (mode == "edges" and ax.name == axis_name) else ax.center
            coords[ax.name] = values.reshape(shape)
        return coords

    def is_allclose(self, other, **kwargs) -> bool:
        if not isinstance(other, MapAxes) or len(self) != len(other):
            return False
        return all(a.is_allclose(b, **kwargs) for a, b in zip(self, other))

    def __eq__(self, other) -> bool:
        return isinstance(other, MapAxes) and self.is_allclose(other, rtol=1e-6, atol=1e-6)

    def __ne__(self, other) -> bool:
        return not self.__eq__(other)

    __hash__ = object.__hash__

    def copy(self) -> "MapAxes":
        return MapAxes([ax.copy() for ax in self])

    def __repr__(self) -> str:
        return "MapAxes(" + ", ".join(repr(ax) for ax in self) + ")"

    # -- FITS -------------------------------------------------------------------------------------
    def to_header(self) -> dict:
        """``AXCOLSi`` / ``INTERPi`` keywords (i from 1) as an ordered dict."""
        header = {}
        for idx, ax in enumerate(self, start=1):
            header[f"AXCOLS{idx}"] = ax.axcols()
            header[f"INTERP{idx}"] = ax.interp
        return header

    def to_table_hdu(self, hdu_bands: str | None = None) -> fits.BinTableHDU:
        """The gadf ``BANDS`` binary table: CHANNEL, then center/min/max columns per axis.

        Parameters
        ----------
        hdu_bands : str, optional
            EXTNAME of the table, e.g. "COUNTS_BANDS" (default "BANDS").

        Returns
        -------
        `~astropy.io.fits.BinTableHDU`
            One row per bin, flattened with the first axis varying fastest; the ``AXCOLSi`` /
            ``INTERPi`` keywords in the header.
        """
        table = Table()
        table["CHANNEL"] = np.arange(int(np.prod(self.shape)))
        # np.meshgrid's default "xy" indexing is what gammapy uses; keep it for identical rows.
        ctr = np.meshgrid(*[ax.center_values for ax in self])
        lo = np.meshgrid(*[ax.edges_values[:-1] for ax in self])
        hi = np.meshgrid(*[ax.edges_values[1:] for ax in self])
        for idx, ax in enumerate(self):
            if not ax.name:
                raise MapFormatError("an axis written to a BANDS table needs a name")
            for colname, grid in zip(ax._column_names(), (ctr, lo, hi)):
                table[colname] = u.Quantity(np.ravel(grid[idx]), ax.unit)
        header = fits.Header()
        for key, value in self.to_header().items():
            header[key] = value
        return fits.BinTableHDU(table, name=hdu_bands or "BANDS", header=header)

    @classmethod
    def from_table_hdu(cls, hdu: fits.BinTableHDU | None) -> "MapAxes":
        """Inverse of :meth:`to_table_hdu` (at most 5 axes, as gammapy; ``None`` gives no axes).

        Parameters
        ----------
        hdu : `~astropy.io.fits.BinTableHDU` or None
            A gadf BANDS table.

        Returns
        -------
        MapAxes
        """
        if hdu is None:
            return cls([])
        if not isinstance(hdu, fits.BinTableHDU):
            raise MapFormatError(f"HDU {hdu.name!r} is not a binary table, cannot hold map axes")
        axes = []
        for idx in range(1, 6):
            axcols = hdu.header.get(f"AXCOLS{idx}")
            if axcols is None:
                break
            colnames = axcols.split(",")
            node_type = "edges" if len(colnames) == 2 else "center"
            if colnames[0] == "E_MIN":
                name = "energy"
            else:
                name = colnames[0].replace("_MIN", "").lower()
                if name == "theta":  # old files
                    name = "rad"
            if name == "time" or "MJDREFI" in hdu.header:
                raise MapFormatError(f"HDU {hdu.name!r}: time axes are not supported")
            interp = hdu.header.get(f"INTERP{idx}", "lin").strip()
            if node_type == "center":
                nodes = np.unique(_column_quantity(hdu, colnames[0]))
            else:
                lo = np.unique(_column_quantity(hdu, colnames[0]))
                hi = np.unique(_column_quantity(hdu, colnames[1]))
                nodes = np.append(lo.value, hi.to_value(lo.unit)[-1]) * lo.unit
            axes.append(MapAxis(nodes, node_type=node_type, interp=interp, name=name))
        return cls(axes)


def _column_quantity(hdu: fits.BinTableHDU, colname: str) -> u.Quantity:
    """A numeric BANDS column as a Quantity (its TUNIT), with format errors naming the HDU."""
    if colname not in hdu.columns.names:
        raise MapFormatError(f"HDU {hdu.name!r}: column {colname!r} named in AXCOLS is missing")
    col = hdu.columns[colname]
    data = np.asarray(hdu.data[colname])
    if data.dtype.kind in "SU":
        raise MapFormatError(f"HDU {hdu.name!r}: label axes (column {colname!r}) are not supported")
    try:
        unit = u.Unit(col.unit or "")
    except ValueError as exc:
        raise MapFormatError(f"HDU {hdu.name!r}: column {colname!r} has invalid unit {col.unit!r}") from exc
    return u.Quantity(data.astype(float), unit)
