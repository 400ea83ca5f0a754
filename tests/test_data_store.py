"""DataStore, index tables and selections against gammapy on H.E.S.S. DL3 DR1; broken inputs."""
from __future__ import annotations

import gzip
import shutil

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import Angle
from astropy.io import fits
from astropy.table import Table
from astropy.time import Time

from gamma_ray_dist.data import DataStore, FitsFileCache, MissingRequiredHDU, ObservationTable
from gamma_ray_dist.data.fits_io import read_table_hdu
from gamma_ray_dist.errors import DataStoreError, IRFError, MissingColumns, ObservationError, WrongColumnUnit

CRAB_IDS = [23523, 23526, 23559, 23592]


def _irf_available():
    try:
        from gamma_ray_dist.irf import irf_from_hdu  # noqa: F401
    except ImportError:
        return False
    return True
SOME_IDS = [20136, 23523, 23592, 47802]


@pytest.fixture(scope="module")
def store(hess_dr1):
    return DataStore.from_dir(hess_dr1)


@pytest.fixture(scope="module")
def gp_store(hess_dr1):
    gammapy_data = pytest.importorskip("gammapy.data")
    return gammapy_data.DataStore.from_dir(hess_dr1)


def test_index_tables_match_gammapy(store, gp_store):
    assert isinstance(store.obs_table, ObservationTable)
    np.testing.assert_array_equal(store.obs_ids, gp_store.obs_ids)
    assert len(store.obs_ids) == 105
    assert len(store.hdu_table) == len(gp_store.hdu_table) == 630
    assert len(store.obs_table) == len(gp_store.obs_table)


SELECTIONS = [
    dict(type="sky_circle", frame="icrs", lon="83.633 deg", lat="22.014 deg", radius="5 deg"),
    dict(type="sky_circle", frame="galactic", lon=Angle(347.3, "deg"), lat=Angle(-0.5, "deg"),
         radius=Angle(1, "deg"), border=Angle(1, "deg")),
    dict(type="sky_circle", frame="icrs", lon=83.633 * u.deg, lat=22.014 * u.deg, radius="5 deg", inverted=True),
    dict(type="time_box", time_range=Time(["2004-12-01T00:00:00", "2004-12-10T00:00:00"])),
    dict(type="time_box", time_range=Time(["2004-12-04T22:20:00", "2004-12-08T00:00:00"]), partial_overlap=True),
    dict(type="par_box", variable="ALT_PNT", value_range=Angle([60.0, 70.0], "deg")),
    dict(type="par_box", variable="OBS_ID", value_range=[23523, 23523]),  # exact value
    dict(type="par_box", variable="OBS_ID", value_range=[23000, 23600]),
]


@pytest.mark.parametrize("selection", SELECTIONS, ids=lambda s: s["type"] + ("-" + s.get("frame", "")))
def test_selections_match_gammapy(store, gp_store, selection):
    ours = store.obs_table.select_observations(selection)
    ref = gp_store.obs_table.select_observations(selection)
    # Exact: same set and order of observation ids.
    assert list(ours["OBS_ID"]) == list(ref["OBS_ID"])
    assert 0 < len(ref) < 105  # every criterion actually selects
    assert isinstance(ours, ObservationTable)


def test_seed_cone_selection(store):
    sel = dict(type="sky_circle", frame="icrs", lon="83.633 deg", lat="22.014 deg", radius="5 deg")
    assert list(store.obs_table.select_observations(sel)["OBS_ID"]) == CRAB_IDS
    both = store.obs_table.select_observations([sel, dict(type="par_box", variable="OBS_ID", value_range=[23525, 23600])])
    assert list(both["OBS_ID"]) == [23526, 23559, 23592]


def test_galactic_selection(store):
    # RX J1713.7-3946 in Galactic coordinates; strings as users write them in YAML.
    sel = dict(type="sky_circle", frame="galactic", lon="347.3 deg", lat="-0.5 deg", radius="2 deg")
    table = store.obs_table.select_observations(sel)
    # Independent check from the GLON_PNT/GLAT_PNT columns (haversine), tolerance 1e-6 deg at the edge.
    t = store.obs_table
    l0, b0 = np.radians(347.3), np.radians(-0.5)
    lon, lat = np.radians(t["GLON_PNT"]), np.radians(t["GLAT_PNT"])
    hav = np.sin((lat - b0) / 2) ** 2 + np.cos(lat) * np.cos(b0) * np.sin((lon - l0) / 2) ** 2
    sep = np.degrees(2 * np.arcsin(np.sqrt(hav)))
    assert np.all(np.abs(sep - 2) > 1e-6)
    assert list(table["OBS_ID"]) == list(t["OBS_ID"][sep < 2])
    assert len(table) > 0


def test_obs_table_times_match_gammapy(store, gp_store):
    # Time objects built the same way: exact agreement.
    assert np.all(store.obs_table.time_start == gp_store.obs_table.time_start)
    assert np.all(store.obs_table.time_stop == gp_store.obs_table.time_stop)


def test_bad_selection_type(store):
    with pytest.raises(ValueError, match="Invalid selection type"):
        store.obs_table.select_observations(dict(type="box"))


def test_env_var_and_tilde_expansion(hess_dr1, monkeypatch):
    monkeypatch.setenv("GRD_TEST_DATA", str(hess_dr1.parent))
    ds = DataStore.from_dir("$GRD_TEST_DATA/hess-dl3-dr1")
    assert len(ds.obs_ids) == 105
    assert ds.obs(23523).events.arrays(["ENERGY"])["ENERGY"].size == 7613
    monkeypatch.setenv("HOME", str(hess_dr1.parent))
    assert len(DataStore.from_dir("~/hess-dl3-dr1").obs_ids) == 105


def test_get_observations(store, gp_store):
    obs = store.get_observations(CRAB_IDS)
    assert obs.ids == gp_store.get_observations(CRAB_IDS).ids == [str(i) for i in CRAB_IDS]
    assert obs["23526"].obs_id == 23526
    assert len(store.get_observations()) == 105
    with pytest.raises(ObservationError) as err:
        store.get_observations([23523, 99999])
    assert err.value.obs_id == 99999 and "hdu-index" in str(err.value)
    assert store.get_observations([23523, 99999], skip_missing=True).ids == ["23523"]
    mask = np.isin(store.obs_ids, CRAB_IDS[:2])
    assert store.get_observations(selection=mask).ids == ["23523", "23526"]


def test_unknown_obs_id(store):
    with pytest.raises(ObservationError) as err:
        store.obs(12345)
    assert err.value.obs_id == 12345
    assert err.value.filename.endswith("hdu-index.fits.gz")
    assert "12345" in str(err.value) and "hdu-index.fits.gz" in str(err.value)


def test_required_irf_validation(store):
    with pytest.raises(ValueError):
        store.obs(23523, required_irf="everything")
    with pytest.raises(ValueError):
        store.obs(23523, required_irf=["aeff", "foo"])
    assert store.obs(23523, required_irf=["aeff", "bkg"]).obs_id == 23523


# ---------------------------------------------------------------------------- tmp data stores


def _hdu_index(rows):
    names = ["OBS_ID", "HDU_TYPE", "HDU_CLASS", "FILE_DIR", "FILE_NAME", "HDU_NAME"]
    table = Table(rows=rows, names=names, dtype=[int, "U10", "U10", "U200", "U80", "U10"])
    return table


def _write_index(tmp_path, rows, obs_ids=None, name="hdu-index.fits.gz"):
    _hdu_index(rows).write(tmp_path / name)
    if obs_ids is not None:
        Table({"OBS_ID": obs_ids, "RA_PNT": np.zeros(len(obs_ids)), "DEC_PNT": np.zeros(len(obs_ids))}).write(
            tmp_path / "obs-index.fits.gz"
        )


def _obs_rows(obs_id, file_dir, file_name, types=("events", "gti", "aeff", "edisp", "psf", "bkg")):
    classes = dict(events="events", gti="gti", aeff="aeff_2d", edisp="edisp_2d", psf="psf_table", bkg="bkg_3d")
    return [(obs_id, t, classes[t], file_dir, file_name, t) for t in types]


def test_shared_irf_file_read_once(tmp_path, hess_dr1):
    """CTA calibration-database layout: three observations share one IRF file."""
    data = hess_dr1 / "data"
    irf_dir = tmp_path / "caldb"
    irf_dir.mkdir()
    shutil.copy(data / "hess_dl3_dr1_obs_id_023523.fits.gz", irf_dir / "irf.fits.gz")
    rows = []
    for obs_id in CRAB_IDS[:3]:
        # Events from DR1 through a relative FILE_DIR, IRFs from the shared file.
        rel = "../" * len(tmp_path.parts) + str(data).lstrip("/")
        rows += _obs_rows(obs_id, rel, f"hess_dl3_dr1_obs_id_{obs_id:06d}.fits.gz", types=("events", "gti"))
        rows += _obs_rows(obs_id, "caldb", "irf.fits.gz", types=("aeff", "edisp", "psf", "bkg"))
    _write_index(tmp_path, rows, obs_ids=CRAB_IDS[:3])
    cache = FitsFileCache()
    ds = DataStore(DataStore.from_dir(tmp_path).hdu_table, cache=cache)
    observations = ds.get_observations()
    assert observations.ids == [str(i) for i in CRAB_IDS[:3]]
    assert observations[1].filenames["aeff"] == str(tmp_path / "caldb" / "irf.fits.gz")
    for obs in observations:
        assert obs.gti.time_sum.to_value("s") > 0
        for t in ("aeff", "edisp", "psf", "bkg"):
            if _irf_available():
                assert getattr(obs, t) is not None
            else:  # same file access path as the IRF reader
                read_table_hdu(obs.filenames[t], t, obs.obs_id, t, cache=cache)
    shared = str((tmp_path / "caldb" / "irf.fits.gz").resolve())
    assert cache.reads[shared] == 1  # decompressed once for 3 observations x 4 IRFs
    assert all(n == 1 for n in cache.reads.values())


def test_missing_index_files(tmp_path, hess_dr1):
    with pytest.raises(DataStoreError, match="not found"):
        DataStore.from_dir(tmp_path / "nowhere")
    with pytest.raises(DataStoreError, match=r"hdu-index\.fits\.gz"):
        DataStore.from_dir(tmp_path)
    _write_index(tmp_path, _obs_rows(23523, str(hess_dr1 / "data"), "hess_dl3_dr1_obs_id_023523.fits.gz"))
    ds = DataStore.from_dir(tmp_path)  # default obs index absent: allowed, as gammapy
    assert ds.obs_table is None
    with pytest.raises(DataStoreError, match="obs-foo.fits"):
        DataStore.from_dir(tmp_path, obs_table_filename="obs-foo.fits")
    (tmp_path / "broken-index.fits.gz").write_bytes(b"\x1f\x8b\x08garbage")
    with pytest.raises(DataStoreError, match="broken-index"):
        DataStore.from_dir(tmp_path, hdu_table_filename="broken-index.fits.gz")


def test_missing_required_hdu(tmp_path, hess_dr1):
    data = str(hess_dr1 / "data")
    rows = _obs_rows(23523, data, "hess_dl3_dr1_obs_id_023523.fits.gz")
    rows += _obs_rows(23526, data, "hess_dl3_dr1_obs_id_023526.fits.gz", types=("events", "gti", "aeff", "edisp"))
    _write_index(tmp_path, rows)
    ds = DataStore.from_dir(tmp_path)
    with pytest.raises(MissingRequiredHDU) as err:
        ds.obs(23526)
    assert err.value.obs_id == 23526 and "psf" in str(err.value)
    assert ds.get_observations().ids == ["23523"]  # skipped, as gammapy
    assert ds.get_observations(required_irf="point-like").ids == ["23523", "23526"]
    assert ds.obs(23526, required_irf="all-optional").available_hdus == ["events", "gti", "aeff", "edisp"]


def _single_obs_store(tmp_path, filename, obs_id=23523):
    _write_index(tmp_path, _obs_rows(obs_id, "", filename.name))
    return DataStore.from_dir(tmp_path).obs(obs_id)


def test_truncated_gzip(tmp_path, hess_dr1):
    raw = (hess_dr1 / "data" / "hess_dl3_dr1_obs_id_023523.fits.gz").read_bytes()
    bad = tmp_path / "trunc.fits.gz"
    bad.write_bytes(raw[: len(raw) // 2])
    obs = _single_obs_store(tmp_path, bad)
    with pytest.raises(ObservationError) as err:
        obs.events.arrays()
    assert err.value.obs_id == 23523 and err.value.filename == str(bad)
    assert "gzip" in err.value.reason
    with pytest.raises(ObservationError, match="trunc.fits.gz"):
        obs.gti  # noqa: B018


def test_missing_file(tmp_path):
    obs = _single_obs_store(tmp_path, tmp_path / "absent.fits.gz")
    with pytest.raises(ObservationError) as err:
        obs.gti  # noqa: B018
    assert err.value.obs_id == 23523 and "absent.fits.gz" in err.value.filename
    assert "not found" in str(err.value)


def _rewrite(src, dst, edit):
    with fits.open(src) as hdul:
        hdul = fits.HDUList([h.copy() for h in hdul])
    edit(hdul)
    hdul.writeto(dst)


def test_missing_hdu(tmp_path, hess_dr1):
    bad = tmp_path / "nogti.fits.gz"
    _rewrite(hess_dr1 / "data" / "hess_dl3_dr1_obs_id_023523.fits.gz", bad, lambda h: h.pop(2))
    obs = _single_obs_store(tmp_path, bad)
    with pytest.raises(ObservationError) as err:
        obs.gti  # noqa: B018
    assert err.value.obs_id == 23523 and err.value.filename == str(bad)
    assert "'gti'" in err.value.reason and "EVENTS" in err.value.reason
    assert obs.events.arrays(["ENERGY"])["ENERGY"].size == 7613  # the rest still reads


def test_missing_irf_hdu(tmp_path, hess_dr1):
    bad = tmp_path / "nobkg.fits.gz"
    _rewrite(hess_dr1 / "data" / "hess_dl3_dr1_obs_id_023523.fits.gz", bad, lambda h: h.pop("BKG"))
    obs = _single_obs_store(tmp_path, bad)
    with pytest.raises(IRFError) as err:
        if _irf_available():
            obs.bkg  # noqa: B018
        else:
            read_table_hdu(bad, "bkg", 23523, "bkg")
    assert err.value.obs_id == 23523 and err.value.filename == str(bad) and "'bkg'" in err.value.reason


def test_missing_column(tmp_path, hess_dr1):
    def drop_energy(hdul):
        hdul["EVENTS"].columns.del_col("ENERGY")
        hdul["EVENTS"] = fits.BinTableHDU.from_columns(hdul["EVENTS"].columns, header=hdul["EVENTS"].header)

    bad = tmp_path / "noenergy.fits.gz"
    _rewrite(hess_dr1 / "data" / "hess_dl3_dr1_obs_id_023523.fits.gz", bad, drop_energy)
    obs = _single_obs_store(tmp_path, bad)
    for access in (lambda: obs.events.arrays(["RA", "DEC"]), lambda: obs.events.table):
        with pytest.raises(MissingColumns) as err:
            access()
        assert err.value.obs_id == 23523 and err.value.filename == str(bad)
        assert "ENERGY" in err.value.reason


def test_wrong_unit(tmp_path, hess_dr1):
    def energy_in_deg(hdul):
        hdul["EVENTS"].columns["ENERGY"].unit = "deg"
        hdul["EVENTS"] = fits.BinTableHDU.from_columns(hdul["EVENTS"].columns, header=hdul["EVENTS"].header)

    bad = tmp_path / "badunit.fits"
    _rewrite(hess_dr1 / "data" / "hess_dl3_dr1_obs_id_023523.fits.gz", bad, energy_in_deg)
    obs = _single_obs_store(tmp_path, bad)
    with pytest.raises(WrongColumnUnit) as err:
        obs.events.arrays()
    assert err.value.obs_id == 23523 and err.value.filename == str(bad) and "ENERGY" in err.value.reason
    with pytest.raises(WrongColumnUnit):
        obs.events.table  # noqa: B018


def test_energy_unit_converted(tmp_path, hess_dr1):
    def energy_in_gev(hdul):
        hdul["EVENTS"].data["ENERGY"] *= 1000
        hdul["EVENTS"].columns["ENERGY"].unit = "GeV"
        hdul["EVENTS"] = fits.BinTableHDU.from_columns(hdul["EVENTS"].columns, header=hdul["EVENTS"].header)

    src = hess_dr1 / "data" / "hess_dl3_dr1_obs_id_023523.fits.gz"
    good = DataStore.from_dir(hess_dr1).obs(23523).events.arrays(["ENERGY"])["ENERGY"]
    gev = tmp_path / "gev.fits.gz"
    _rewrite(src, gev, energy_in_gev)
    energy = _single_obs_store(tmp_path, gev).events.arrays(["ENERGY"])["ENERGY"]
    np.testing.assert_allclose(energy, good, rtol=1e-6)  # float32 round trip of x1000


def test_file_cache_bounded_and_invalidated(tmp_path, hess_dr1):
    src = hess_dr1 / "data" / "hess_dl3_dr1_obs_id_023523.fits.gz"
    cache = FitsFileCache(max_bytes=1)  # nothing fits: every access reads
    cache.get_bytes(src)
    cache.get_bytes(src)
    assert cache.misses == 2 and cache.hits == 0
    cache = FitsFileCache()
    copy = tmp_path / "f.fits.gz"
    shutil.copy(src, copy)
    first = cache.get_bytes(copy)
    assert cache.get_bytes(copy) is first and cache.hits == 1
    copy.write_bytes(gzip.compress(b"x" * 2880))  # rewritten file: new key, re-read
    assert cache.get_bytes(copy) == b"x" * 2880
