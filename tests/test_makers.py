"""Makers vs gammapy 2.1: the seed reference JSON and live gammapy runs on H.E.S.S. DR1.

Tolerances: counts and masks exact; exposure, background, PSF and EDisp maps rtol 1e-4 (we agree to
~1e-13 in practice); FoV norms within 0.002 of gammapy's migrad result (our Cash minimum is exact).
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from regions import CircleSkyRegion

from gamma_ray_dist.data import DataStore
from gamma_ray_dist.datasets import MapDataset
from gamma_ray_dist.makers import FoVBackgroundMaker, MapDatasetMaker, SafeMaskMaker
from gamma_ray_dist.maps import MapAxis, WcsGeom

DEG2_PER_SR = (180 / np.pi) ** 2


def _geoms(mod, center, binsz, width, frame, proj, e_reco, e_true):
    e = mod.MapAxis.from_energy_bounds(*e_reco, unit="TeV")
    et = mod.MapAxis.from_energy_bounds(*e_true, unit="TeV", name="energy_true")
    geom = mod.WcsGeom.create(skydir=center, binsz=binsz, width=width, frame=frame, proj=proj, axes=[e])
    return geom, et


class _Maps:
    """Ours and gammapy's reduced cutout datasets of one observation on one geometry."""

    def __init__(self, hess_dr1, obs_id, center, binsz=0.02, width=(2, 2), frame="icrs", proj="CAR",
                 e_reco=(1, 10, 4), e_true=(0.5, 20, 10), offset_max=2.5):
        pytest.importorskip("gammapy")
        from gammapy import data as gdata, datasets as gdatasets, maps as gmaps

        warnings.simplefilter("ignore")
        self.gobs = gdata.DataStore.from_dir(hess_dr1).obs(obs_id)
        self.obs = DataStore.from_dir(hess_dr1).obs(obs_id)
        ggeom, get = _geoms(gmaps, center, binsz, width, frame, proj, e_reco, e_true)
        geom, et = _geoms(__import__("gamma_ray_dist.maps", fromlist=["x"]), center, binsz, width, frame, proj,
                          e_reco, e_true)
        self.geom, self.ggeom = geom, ggeom
        width = 2 * offset_max * u.deg
        self.gcut = gdatasets.MapDataset.create(ggeom, energy_axis_true=get, name="g").cutout(
            self.gobs.get_pointing_icrs(self.gobs.tmid), width=width)
        self.cut = MapDataset.create(geom, energy_axis_true=et, name="o").cutout(
            self.obs.get_pointing_icrs(self.obs.tmid), width=width)
        from gammapy.makers import MapDatasetMaker as GMaker

        self.gd = GMaker().run(self.gcut, self.gobs)
        self.d = MapDatasetMaker().run(self.cut, self.obs)


@pytest.fixture(scope="module")
def seed_maps(hess_dr1):
    return _Maps(hess_dr1, 23559, (83.633, 22.014))


@pytest.fixture(scope="module")
def galactic_maps(hess_dr1):
    # other target, frame, projection and binning: RX J1713.7-3946 in galactic TAN, 0.05 deg pixels
    return _Maps(hess_dr1, 20326, (347.3, -0.5), binsz=0.05, width=(3, 2.5), frame="galactic", proj="TAN",
                 e_reco=(0.7, 30, 6), e_true=(0.3, 50, 15), offset_max=2.0)


def _assert_maps(m):
    assert m.d.counts.data.shape == m.gd.counts.data.shape
    np.testing.assert_array_equal(m.d.counts.data, m.gd.counts.data)
    assert m.d.counts.data.sum() > 0
    np.testing.assert_allclose(m.d.exposure.data, m.gd.exposure.quantity.to_value("m2 s"), rtol=1e-4)
    np.testing.assert_allclose(m.d.background.data, m.gd.background.data, rtol=1e-4, atol=1e-12)
    ours_psf = m.d.psf.psf_map.data / DEG2_PER_SR  # we store sr-1, gammapy deg-2
    np.testing.assert_allclose(ours_psf, m.gd.psf.psf_map.quantity.to_value("deg-2"), rtol=1e-4, atol=1e-8)
    np.testing.assert_allclose(m.d.psf.exposure_map.data, m.gd.psf.exposure_map.data, rtol=1e-4)
    np.testing.assert_allclose(m.d.edisp.edisp_map.data, m.gd.edisp.edisp_map.data, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(m.d.edisp.exposure_map.data, m.gd.edisp.exposure_map.data, rtol=1e-4)


def test_maps_match_gammapy_seed_geometry(seed_maps):
    _assert_maps(seed_maps)


def test_maps_match_gammapy_galactic_tan(galactic_maps):
    assert galactic_maps.geom.frame == "galactic"
    _assert_maps(galactic_maps)


@pytest.mark.parametrize("methods, kwargs", [
    (["offset-max"], {"offset_max": "1.8 deg"}),
    (["aeff-default"], {}),
    (["aeff-max"], {}),
    (["aeff-max"], {"aeff_percent": 30, "position": SkyCoord(83.2, 21.8, unit="deg")}),
    (["aeff-max"], {"fixed_offset": 0.7 * u.deg}),
    (["edisp-bias"], {}),
    (["edisp-bias"], {"bias_percent": 5}),
    (["bkg-peak"], {}),
    (["offset-max", "aeff-max", "edisp-bias"], {"offset_max": "2.2 deg"}),
])
def test_safe_mask_methods_match_gammapy(seed_maps, methods, kwargs):
    from gammapy.makers import SafeMaskMaker as GSafe

    gd = GSafe(methods=methods, **kwargs).run(seed_maps.gd.copy(), seed_maps.gobs)
    d = SafeMaskMaker(methods=methods, **kwargs).run(seed_maps.d.copy(), seed_maps.obs)
    np.testing.assert_array_equal(d.mask_safe.data, gd.mask_safe.data)


def test_safe_mask_galactic_matches_gammapy(galactic_maps):
    from gammapy.makers import SafeMaskMaker as GSafe

    methods = ["offset-max", "aeff-max", "bkg-peak"]
    gd = GSafe(methods=methods, offset_max="1.5 deg").run(galactic_maps.gd.copy(), galactic_maps.gobs)
    d = SafeMaskMaker(methods=methods, offset_max="1.5 deg").run(galactic_maps.d.copy(), galactic_maps.obs)
    assert 0 < d.mask_safe.data.sum() < d.mask_safe.data.size
    np.testing.assert_array_equal(d.mask_safe.data, gd.mask_safe.data)


@pytest.mark.parametrize("method", ["fit", "scale"])
def test_fov_background_matches_gammapy(seed_maps, method):
    from gammapy.makers import FoVBackgroundMaker as GFoV, SafeMaskMaker as GSafe

    region = CircleSkyRegion(SkyCoord(83.63, 22.14, unit="deg"), 0.3 * u.deg)
    gexcl = ~seed_maps.ggeom.region_mask([region])
    excl = ~seed_maps.geom.region_mask([region])
    gd = GSafe(methods=["offset-max", "aeff-max"], offset_max="2.5 deg").run(seed_maps.gd.copy(), seed_maps.gobs)
    gd = GFoV(method=method, exclusion_mask=gexcl).run(gd)
    d = SafeMaskMaker(methods=["offset-max", "aeff-max"], offset_max="2.5 deg").run(seed_maps.d.copy(), seed_maps.obs)
    d = FoVBackgroundMaker(method=method, exclusion_mask=excl).run(d)
    gnorm = gd.models[0].spectral_model.norm.value
    norm = d.background_model.spectral_model.norm.value
    tol = 1e-9 if method == "scale" else 2e-3
    assert abs(norm - gnorm) < tol
    assert abs(norm - 1) > 1e-3  # the norm really moved
    assert d.mask_fit is None  # restored, as gammapy
    np.testing.assert_array_equal(d.mask_safe.data, gd.mask_safe.data)


def test_fov_fit_without_counts_masks_dataset_like_gammapy(seed_maps):
    from gammapy.makers import FoVBackgroundMaker as GFoV

    gexcl = seed_maps.ggeom.region_mask([CircleSkyRegion(SkyCoord(0, 0, unit="deg"), 0.1 * u.deg)])
    excl = seed_maps.geom.region_mask([CircleSkyRegion(SkyCoord(0, 0, unit="deg"), 0.1 * u.deg)])
    assert not excl.data.any()
    gd = GFoV(method="fit", exclusion_mask=gexcl).run(seed_maps.gd.copy())
    d = FoVBackgroundMaker(method="fit", exclusion_mask=excl).run(seed_maps.d.copy())
    assert not gd.mask_safe.data.any() and not d.mask_safe.data.any()
    assert d.background_model.spectral_model.norm.value == gd.models[0].spectral_model.norm.value == 1
    assert d.meta["fov_status"].startswith("failed")


def test_seed_observations_match_reference(hess_dr1, seed_reference):
    """Per observation: counts, FoV norm, background, exposure max and safe bins of the seed run."""
    from gamma_ray_dist.reduction import ReductionSpec, reduce_to_dataset

    e = MapAxis.from_energy_bounds(1.0, 10.0, 4, unit="TeV")
    et = MapAxis.from_energy_bounds(0.5, 20, 10, unit="TeV", name="energy_true")
    geom = WcsGeom.create(skydir=(83.633, 22.014), binsz=0.02, width=(2, 2), frame="icrs", proj="CAR", axes=[e])
    excl = ~geom.region_mask([CircleSkyRegion(SkyCoord(83.63, 22.14, unit="deg"), 0.2 * u.deg)])
    spec = ReductionSpec(geom, et, offset_max=2.5, exclusion_mask=excl)
    for ref in seed_reference["per_obs"]:
        d = reduce_to_dataset((hess_dr1, ref["obs_id"]), spec)
        assert d.counts.data.sum() == ref["counts"]
        assert (d.counts.data * d.mask_safe.data).sum() == ref["counts_safe"]
        assert d.mask_safe.data.sum() == ref["mask_safe_bins"]
        assert abs(d.background_model.spectral_model.norm.value - ref["bkg_norm"]) < 2e-3
        assert d.background.data.sum() == pytest.approx(ref["background"], rel=1e-3)
        assert d.exposure.data.max() == pytest.approx(ref["exposure_max"], rel=1e-3)
