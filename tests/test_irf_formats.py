"""IRF formats DR1 lacks (psf_3gauss, psf_king, bkg_2d, ALTAZ, old headers), written by the tests with
gammapy's own classes, and error handling on broken HDUs."""
from __future__ import annotations

import numpy as np
import pytest
from astropy import units as u
from astropy.io import fits
from numpy.testing import assert_allclose

from gamma_ray_dist.errors import IRFError, MissingColumns, ObservationError, WrongColumnUnit
from gamma_ray_dist.irf import (
    Background2D,
    Background3D,
    EffectiveAreaTable2D,
    EnergyDependentMultiGaussPSF,
    EnergyDispersion2D,
    PSFKing,
    irf_from_hdu,
)

gammapy = pytest.importorskip("gammapy")
from gammapy import irf as girf  # noqa: E402
from gammapy.maps import MapAxis  # noqa: E402

RTOL = 1e-6
ENERGY_TRUE = MapAxis.from_energy_bounds(0.1, 100, nbin=8, unit="TeV", name="energy_true")
OFFSET = MapAxis.from_edges([0.0, 0.5, 1.0, 1.5, 2.0, 2.5], unit="deg", name="offset")
E = np.geomspace(0.02, 400.0, 23)[:, None, None]  # beyond the axes: parameters extrapolate
OFF = np.linspace(-0.2, 3.5, 9)[None, :, None]
RAD = np.linspace(0.0, 0.8, 17)[None, None, :]


def _roundtrip(hdu: fits.BinTableHDU, tmp_path, name="irf.fits") -> fits.BinTableHDU:
    path = tmp_path / name
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path, overwrite=True)
    return path


@pytest.fixture(scope="module")
def gauss_psf():
    rng = np.random.default_rng(1)
    shape = (ENERGY_TRUE.nbin, OFFSET.nbin)
    names = ["sigma_1", "sigma_2", "sigma_3", "scale", "ampl_2", "ampl_3"]
    data = np.empty(shape, dtype={"names": names, "formats": [np.float32] * 6})
    data["sigma_1"] = rng.uniform(0.02, 0.05, shape)
    data["sigma_2"] = rng.uniform(0.06, 0.12, shape)
    data["sigma_3"] = rng.uniform(0.15, 0.3, shape)
    data["sigma_3"][0, 0] = 0  # gammapy replaces zero sigmas by 1 on read
    data["scale"] = rng.uniform(1, 10, shape)
    data["ampl_2"] = rng.uniform(0.1, 0.5, shape)
    data["ampl_3"] = rng.uniform(0.01, 0.1, shape)
    unit = {"sigma_1": u.deg, "sigma_2": u.deg, "sigma_3": u.deg, "scale": u.Unit("sr-1"),
            "ampl_2": u.one, "ampl_3": u.one}
    return girf.EnergyDependentMultiGaussPSF(axes=[ENERGY_TRUE, OFFSET], data=data, unit=unit)


@pytest.fixture(scope="module")
def king_psf():
    rng = np.random.default_rng(2)
    shape = (ENERGY_TRUE.nbin, OFFSET.nbin)
    data = np.empty(shape, dtype={"names": ["gamma", "sigma"], "formats": [np.float32] * 2})
    data["gamma"] = rng.uniform(1.5, 4.0, shape)
    data["sigma"] = rng.uniform(0.03, 0.15, shape)
    return girf.PSFKing(axes=[ENERGY_TRUE, OFFSET], data=data, unit={"gamma": u.one, "sigma": u.deg})


@pytest.mark.parametrize("kind", ["gauss", "king"])
def test_parametric_psf(kind, gauss_psf, king_psf, tmp_path):
    theirs_built = gauss_psf if kind == "gauss" else king_psf
    hdu = theirs_built.to_table_hdu()
    # gammapy 2.1 writes parametric PSFs without the GADF class keywords: add them
    hdu.header.update(HDUCLAS1="RESPONSE", HDUCLAS2="RPSF", HDUCLAS4=theirs_built.tag.upper())
    path = _roundtrip(hdu, tmp_path)
    cls = girf.EnergyDependentMultiGaussPSF if kind == "gauss" else girf.PSFKing
    theirs = cls.read(path, hdu=1)
    with fits.open(path) as hdulist:
        ours = irf_from_hdu(hdulist[1], filename=path)
    assert type(ours) is (EnergyDependentMultiGaussPSF if kind == "gauss" else PSFKing)
    expected = theirs.evaluate(energy_true=E * u.TeV, offset=OFF * u.deg, rad=RAD * u.deg).to_value("sr-1")
    assert_allclose(ours.evaluate_values(energy_true=E, offset=OFF, rad=RAD), expected, rtol=RTOL)
    assert_allclose(ours.evaluate(E * u.TeV, OFF * u.deg, RAD * u.deg).to_value("sr-1"), expected, rtol=RTOL)
    energy = np.array([0.2, 1.0, 10.0, 80.0])[:, None]
    offset = np.array([0.0, 0.7, 2.2])[None, :]
    for fraction in (0.68, 0.95):
        exp_r = theirs.containment_radius(fraction=fraction, energy_true=energy * u.TeV, offset=offset * u.deg)
        act_r = ours.containment_radius(fraction, energy * u.TeV, offset * u.deg)
        assert_allclose(act_r.to_value("deg"), exp_r.to_value("deg"), rtol=1e-9)
    cont = theirs.containment(rad=RAD * u.deg, energy_true=E * u.TeV, offset=OFF * u.deg)
    assert_allclose(ours.containment_values(RAD, E, OFF), np.asarray(cont), rtol=RTOL, atol=1e-12)


def test_parametric_psf_map_values(king_psf, tmp_path):
    from astropy.coordinates import SkyCoord
    from gammapy.datasets.map import RAD_AXIS_DEFAULT
    from gammapy.makers.utils import make_psf_map
    from gammapy.maps import WcsGeom

    path = _roundtrip(king_psf.to_table_hdu(), tmp_path)
    ours = PSFKing.read(path, hdu=1)
    pointing = SkyCoord(10.0, -30.0, unit="deg")
    etrue = MapAxis.from_energy_bounds(0.5, 50, nbin=4, unit="TeV", name="energy_true")
    geom = WcsGeom.create(skydir=pointing, binsz=0.5, width=3.0, axes=[RAD_AXIS_DEFAULT, etrue])
    expected = make_psf_map(girf.PSFKing.read(path, hdu=1), pointing, geom).psf_map.quantity.to_value("sr-1")
    offset = geom.to_image().get_coord().skycoord.separation(pointing).deg
    actual = ours.psf_map_values(etrue.center.value, offset, RAD_AXIS_DEFAULT.edges.value)
    assert_allclose(actual, expected, rtol=1e-6)


def _bkg2d():
    energy = MapAxis.from_energy_bounds(0.1, 100, nbin=10, unit="TeV", name="energy")
    rng = np.random.default_rng(3)
    data = rng.uniform(1e-6, 1e-3, (energy.nbin, OFFSET.nbin)) * np.geomspace(1, 1e-4, energy.nbin)[:, None]
    data[3, 2] = 0.0  # zeros are interpolated in log like gammapy
    return girf.Background2D(axes=[energy, OFFSET], data=data.astype(np.float32), unit="s-1 MeV-1 sr-1")


def test_bkg_2d(tmp_path):
    path = _roundtrip(_bkg2d().to_table_hdu(), tmp_path)
    theirs = girf.Background2D.read(path, hdu=1)
    with fits.open(path) as hdulist:
        ours = irf_from_hdu(hdulist[1])
    assert isinstance(ours, Background2D)
    e = np.geomspace(0.03, 300.0, 19)[:, None]
    off = np.linspace(-0.1, 3.0, 11)[None, :]
    expected = theirs.evaluate(energy=e * u.TeV, offset=off * u.deg).to_value("s-1 TeV-1 sr-1")
    assert_allclose(ours.evaluate_values(energy=e, offset=off), expected, rtol=RTOL)
    assert (expected == 0).any() and expected.max() > 0
    edges = np.geomspace(0.05, 150.0, 9)
    expected = theirs.integrate_log_log(axis_name="energy", energy=edges[:, None] * u.TeV,
                                        offset=off * u.deg).to_value("s-1 sr-1")
    assert_allclose(ours.integrate_log_log_values(edges, off[0]), expected, rtol=RTOL)
    assert_allclose(ours.integrate_log_log(edges * u.TeV, off[0] * u.deg).to_value("s-1 sr-1"), expected, rtol=RTOL)


def test_bkg_3d_altaz_and_transposed(tmp_path):
    energy = MapAxis.from_energy_bounds(0.1, 100, nbin=6, unit="TeV", name="energy")
    lon = MapAxis.from_bounds(-3, 3, nbin=7, unit="deg", name="fov_lon")
    lat = MapAxis.from_bounds(-3, 3, nbin=5, unit="deg", name="fov_lat")
    rng = np.random.default_rng(4)
    data = rng.uniform(1e-5, 1e-3, (6, 7, 5)).astype(np.float32)
    bkg = girf.Background3D(axes=[energy, lon, lat], data=data, unit="s-1 MeV-1 sr-1", fov_alignment="ALTAZ")
    hdu = bkg.to_table_hdu()
    hdu.header["FOVALIGN"] = "ALTAZ"
    path = _roundtrip(hdu, tmp_path)
    theirs = girf.Background3D.read(path, hdu=1)
    ours = Background3D.read(path, hdu=1)
    assert ours.fov_alignment == theirs.fov_alignment.value == "ALTAZ"
    e = np.geomspace(0.05, 200.0, 9)[:, None, None]
    x = np.linspace(-3.5, 3.5, 8)[None, :, None]
    y = np.linspace(-3.5, 3.5, 6)[None, None, :]
    expected = theirs.evaluate(energy=e * u.TeV, fov_lon=x * u.deg, fov_lat=y * u.deg).to_value("s-1 TeV-1 sr-1")
    assert_allclose(ours.evaluate_values(energy=e, fov_lon=x, fov_lat=y), expected, rtol=RTOL)

    # old H.E.S.S./CTA files store the cube in (lon, lat, E) order: both readers transpose
    cols = [c for c in hdu.columns if c.name != "BKG"]
    cube = hdu.data["BKG"][0]
    cols.append(fits.Column("BKG", format=f"{cube.size}E", unit="s-1 MeV-1 sr-1", array=cube.T[None],
                            dim=str(cube.shape)))
    old = fits.BinTableHDU.from_columns(cols, header=hdu.header)
    path_old = _roundtrip(old, tmp_path, "old.fits")
    ours_old = Background3D.read(path_old, hdu=1)
    assert_allclose(ours_old.data, ours.data, rtol=0)


def _aeff_hdu():
    aeff = girf.EffectiveAreaTable2D(axes=[ENERGY_TRUE, OFFSET],
                                     data=np.linspace(1, 5e5, 40).reshape(8, 5).astype(np.float32), unit="m2")
    return aeff.to_table_hdu()


@pytest.mark.parametrize(
    "clas2, clas4, expected",
    [
        ("EFF_AREA", "AEFF_2D", EffectiveAreaTable2D),
        ("EFF_AREA", "2D", EffectiveAreaTable2D),
        ("RPSF", "3GAUSS", EnergyDependentMultiGaussPSF),
        ("RPSF", "KING", PSFKing),
        ("BKG", "2D", Background2D),
    ],
)
def test_old_and_new_headers(clas2, clas4, expected, gauss_psf, king_psf):
    from gammapy.irf.io import _get_hdu_type_and_class

    source = {EffectiveAreaTable2D: _aeff_hdu, EnergyDependentMultiGaussPSF: gauss_psf.to_table_hdu,
              PSFKing: king_psf.to_table_hdu, Background2D: _bkg2d().to_table_hdu}[expected]
    hdu = source()
    hdu.header["HDUCLAS2"] = clas2
    hdu.header["HDUCLAS4"] = clas4
    assert _get_hdu_type_and_class(hdu.header)[1] == expected.tag  # gammapy reads it the same way
    assert type(irf_from_hdu(hdu)) is expected


def test_unknown_hduclass():
    hdu = _aeff_hdu()
    hdu.header["HDUCLAS2"] = "EFF_AREA"
    hdu.header["HDUCLAS4"] = "AEFF_5D"
    with pytest.raises(IRFError, match="unknown IRF class"):
        irf_from_hdu(hdu, filename="x.fits", obs_id=7)
    hdu.header["HDUCLAS2"] = "SOMETHING"
    hdu.header["HDUCLAS4"] = "AEFF_2D"
    with pytest.raises(IRFError) as err:
        irf_from_hdu(hdu, filename="x.fits", obs_id=7)
    assert err.value.obs_id == 7 and err.value.filename == "x.fits"


def _replace_column(hdu, name, array=None, unit=None, drop=False):
    cols = []
    for col in hdu.columns:
        if col.name != name:
            cols.append(col)
        elif not drop:
            cols.append(fits.Column(name, format=col.format, unit=unit if unit is not None else col.unit,
                                    dim=col.dim, array=hdu.data[name] if array is None else array))
    return fits.BinTableHDU.from_columns(cols, header=hdu.header)


def test_wrong_unit():
    hdu = _replace_column(_aeff_hdu(), "EFFAREA", unit="s")
    with pytest.raises(WrongColumnUnit, match="EFFAREA") as err:
        irf_from_hdu(hdu, filename="aeff.fits", obs_id=42)
    assert err.value.obs_id == 42 and err.value.filename == "aeff.fits"
    assert isinstance(err.value, ObservationError)
    hdu = _replace_column(_aeff_hdu(), "THETA_LO", unit="TeV")
    with pytest.raises(WrongColumnUnit, match="THETA_LO"):
        EffectiveAreaTable2D.from_hdu(hdu)


def test_unit_conversion_cm2():
    hdu = _aeff_hdu()
    cm2 = _replace_column(hdu, "EFFAREA", array=hdu.data["EFFAREA"] * 1e4, unit="cm2")
    assert_allclose(irf_from_hdu(cm2).data, irf_from_hdu(hdu).data, rtol=1e-6)


def test_missing_columns():
    with pytest.raises(MissingColumns, match="EFFAREA"):
        irf_from_hdu(_replace_column(_aeff_hdu(), "EFFAREA", drop=True), obs_id=3)
    with pytest.raises(MissingColumns, match="offset"):
        irf_from_hdu(_replace_column(_aeff_hdu(), "THETA_HI", drop=True), obs_id=3)


def test_nan_data_raises(hess_dr1):
    hdu = _aeff_hdu()
    bad = hdu.data["EFFAREA"].copy()
    bad[0, 2, 3] = np.nan
    with pytest.raises(IRFError, match="NaN") as err:
        irf_from_hdu(_replace_column(hdu, "EFFAREA", array=bad), filename="f.fits", obs_id=5)
    assert "EFFECTIVE AREA" in str(err.value) and "obs_id=5" in str(err.value)
    with fits.open(hess_dr1 / "data" / "hess_dl3_dr1_obs_id_023523.fits.gz") as hdulist:
        edisp = hdulist["EDISP"].copy()
    bad = edisp.data["MATRIX"].copy()
    bad[0, 0, 0, 0] = np.inf
    with pytest.raises(IRFError, match="infinite"):
        EnergyDispersion2D.from_hdu(_replace_column(edisp, "MATRIX", array=bad))


def test_missing_hdu(tmp_path):
    path = _roundtrip(_aeff_hdu(), tmp_path)
    with pytest.raises(IRFError, match="not found"):
        EffectiveAreaTable2D.read(path, hdu="NOPE")


def test_data_read_only_and_plain(tmp_path):
    path = _roundtrip(_aeff_hdu(), tmp_path)
    aeff = EffectiveAreaTable2D.read(path)  # default GADF extension name
    assert aeff.data.dtype == np.float64 and not aeff.data.flags.writeable
    assert aeff.evaluate_values(energy_true=np.array([1.0]), offset=np.array([0.3])).dtype == np.float64
    with pytest.raises(TypeError, match="offset"):
        aeff.evaluate_values(energy_true=1.0)
    with pytest.raises(ValueError, match="rad"):
        aeff.evaluate(energy_true=1.0, offset=0.5, rad=0.1)
    with pytest.raises(ValueError, match="unit"):
        aeff.evaluate(energy_true=1.0 * u.deg, offset=0.5)
