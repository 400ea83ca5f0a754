"""Write a simulated GADF data store: hdu-index, obs-index, one file per observation.

Speed: the IRF HDUs are identical for every observation, so they are serialised and
gzip-compressed once; each observation file is the gzip member of its EVENTS/GTI/POINTING
HDUs followed by that cached member (a multi-member gzip stream is a valid ``.gz`` file for
zlib, Python's gzip and astropy). Files carry no creation date and gzip mtime is 0, so the same
seed gives byte-identical files.
"""
from __future__ import annotations

import gzip
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table

from .events import SimulatedEvents, angular_separation, sample_events
from .fitsbytes import primary_bytes
from .gadf import COMMON, events_bytes, gti_bytes, irf_hdus, pointing_bytes
from .irfs import AnalyticIRFs
from .schedule import HESS_SITE, MJDREFF, MJDREFI, ObservationPlan, plan_observations
from .source import SourceModel, truth

__all__ = ["simulate_datastore", "simulate_observation", "write_observation", "IRFBlock", "build_irf_block",
           "write_index_tables", "obs_filename"]

_PRIMARY_BYTES = primary_bytes()
IRF_TYPES = ("aeff", "edisp", "psf", "bkg")
SHARED_IRF_DIR = "caldb"
SHARED_IRF_FILE = "irf_file.fits.gz"


def obs_filename(obs_id: int) -> str:
    """Name of an observation's file inside ``data/``."""
    return f"obs_{int(obs_id):06d}.fits.gz"


@dataclass
class IRFBlock:
    """IRF HDUs serialised once: gzip member bytes plus the index-table fields per HDU."""

    gz: bytes
    hdu_class: dict = field(default_factory=dict)  # hdu_type -> class tag
    hdu_name: dict = field(default_factory=dict)  # hdu_type -> EXTNAME
    size: dict = field(default_factory=dict)  # hdu_type -> bytes (header + data)


def build_irf_block(irfs: AnalyticIRFs, psf: str = "psf_3gauss", bkg: str = "bkg_3d",
                    caldb_names: bool = False, compresslevel: int = 6) -> IRFBlock:
    """Tabulate the IRFs into GADF HDUs and serialise them (without a primary HDU)."""
    items = irf_hdus(irfs, psf=psf, bkg=bkg, caldb_names=caldb_names)
    buf = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU()] + [h for _, _, h in items]).writeto(buf)
    raw = buf.getvalue()[len(_PRIMARY_BYTES):]
    block = IRFBlock(gz=gzip.compress(raw, compresslevel=compresslevel, mtime=0))
    for hdu_type, tag, hdu in items:
        block.hdu_class[hdu_type] = tag
        block.hdu_name[hdu_type] = hdu.name
        block.size[hdu_type] = hdu.filebytes()
    return block


def _time_cards(plan: ObservationPlan, i: int) -> list[tuple]:
    return [
        ("TSTART", float(plan.tstart[i]), "start time [s, MET]"),
        ("TSTOP", float(plan.tstop[i]), "stop time [s, MET]"),
        ("MJDREFI", MJDREFI, "int part of reference MJD for times"),
        ("MJDREFF", MJDREFF, "fractional part of MJDREF"),
        ("TIMEUNIT", "s", "time unit"),
        ("TIMESYS", "TT", "time system"),
        ("TIMEREF", "LOCAL", "time reference"),
    ]


def _events_cards(plan: ObservationPlan, i: int, source: SourceModel | None, seed: int) -> list[tuple]:
    obj_ra = source.ra if source is not None else float(plan.ra_pnt[i])
    obj_dec = source.dec if source is not None else float(plan.dec_pnt[i])
    return [
        ("OBS_ID", int(plan.obs_id[i]), "observation number"),
        *_time_cards(plan, i),
        ("TELAPSE", float(plan.tstop[i] - plan.tstart[i]), "stop - start [s]"),
        ("ONTIME", float(plan.ontime[i]), "total good time incl. dead time [s]"),
        ("LIVETIME", float(plan.livetime[i]), "live time [s]"),
        ("DEADC", float(plan.deadc[i]), "LIVETIME / ONTIME"),
        ("DATE-OBS", str(plan.date_obs[i]), "start date (UTC)"),
        ("TIME-OBS", str(plan.time_obs[i]), "start time (UTC)"),
        ("DATE-END", str(plan.date_end[i]), "stop date (UTC)"),
        ("TIME-END", str(plan.time_end[i]), "stop time (UTC)"),
        ("OBJECT", source.name if source is not None else "background", "observed object"),
        ("RA_OBJ", obj_ra, "target RA [deg]"),
        ("DEC_OBJ", obj_dec, "target Dec [deg]"),
        ("RA_PNT", float(plan.ra_pnt[i]), "pointing RA [deg]"),
        ("DEC_PNT", float(plan.dec_pnt[i]), "pointing Dec [deg]"),
        ("GLON_PNT", float(plan.glon_pnt[i]), "pointing Galactic longitude [deg]"),
        ("GLAT_PNT", float(plan.glat_pnt[i]), "pointing Galactic latitude [deg]"),
        ("ALT_PNT", float(plan.alt_pnt[i]), "mean altitude [deg]"),
        ("AZ_PNT", float(plan.az_pnt[i]), "mean azimuth [deg]"),
        ("RADESYS", "ICRS", "equatorial system"),
        ("EQUINOX", 2000.0, "base equinox"),
        ("OBS_MODE", "POINTING", "fixed RA/Dec pointing (wobble)"),
        ("N_TELS", 4, "number of telescopes"),
        ("TELLIST", "1,2,3,4", "telescope ids"),
        ("GEOLON", HESS_SITE["GEOLON"], "observatory longitude [deg]"),
        ("GEOLAT", HESS_SITE["GEOLAT"], "observatory latitude [deg]"),
        ("ALTITUDE", HESS_SITE["ALTITUDE"], "observatory altitude [m]"),
        ("EUNIT", "TeV", "energy unit"),
        ("EV_CLASS", "sim", "event class"),
        ("CREATOR", "gamma_ray_dist.simulate", "program"),
        ("SIMSEED", int(seed), "rng = default_rng([SIMSEED, OBS_ID])"),
    ]


def simulate_observation(plan: ObservationPlan, i: int, irfs: AnalyticIRFs, source: SourceModel | None,
                         seed: int) -> SimulatedEvents:
    """Sample the events of observation ``i`` of ``plan`` (rng seeded by ``[seed, obs_id]``)."""
    rng = np.random.default_rng([int(seed), int(plan.obs_id[i])])
    return sample_events(rng, irfs, source, float(plan.ra_pnt[i]), float(plan.dec_pnt[i]),
                         float(plan.livetime[i]), float(plan.tstart[i]), float(plan.tstop[i]))


def write_observation(base_dir: str | Path, plan: ObservationPlan, i: int, irfs: AnalyticIRFs,
                      source: SourceModel | None, seed: int, irf_block: IRFBlock | None,
                      compresslevel: int = 6) -> dict:
    """Simulate and write ``data/obs_XXXXXX.fits.gz`` of observation ``i``; pure given its inputs.

    ``irf_block=None`` writes no IRF HDUs (they live in a shared file). Returns the index fields
    ``{"obs_id", "n_events", "sizes": {hdu_type: bytes}, "n_expected_signal", ...}``.
    """
    ev = simulate_observation(plan, i, irfs, source, seed)
    tmid = 0.5 * (plan.tstart[i] + plan.tstop[i])
    hdus = [
        events_bytes(ev, _events_cards(plan, i, source, seed)),
        gti_bytes(float(plan.tstart[i]), float(plan.tstop[i]), _time_cards(plan, i)),
        pointing_bytes(float(tmid), float(plan.ra_pnt[i]), float(plan.dec_pnt[i]), float(plan.alt_pnt[i]),
                       float(plan.az_pnt[i]), _time_cards(plan, i) + [("OBS_ID", int(plan.obs_id[i]), "")]),
    ]
    payload = gzip.compress(b"".join([_PRIMARY_BYTES] + hdus), compresslevel=compresslevel, mtime=0)
    if irf_block is not None:
        payload += irf_block.gz
    out = Path(base_dir) / "data" / obs_filename(plan.obs_id[i])
    out.write_bytes(payload)
    sizes = {t: len(h) for t, h in zip(("events", "gti", "pointing"), hdus)}
    if irf_block is not None:
        sizes.update(irf_block.size)
    return {"obs_id": int(plan.obs_id[i]), "n_events": len(ev), "sizes": sizes,
            "n_signal": int(ev.mc_id.sum()), "n_expected_signal": ev.n_expected_signal,
            "n_expected_background": ev.n_expected_background}


def _index_meta(hdu_class2: str, extname: str) -> dict:
    meta = {k: v for k, v, _ in COMMON}
    meta.update(HDUCLAS1="INDEX", HDUCLAS2=hdu_class2, EXTNAME=extname)
    return meta


def write_index_tables(base_dir: str | Path, plan: ObservationPlan, results: list[dict], irf_block: IRFBlock,
                       shared_irfs: bool, source: SourceModel | None) -> None:
    """Write ``hdu-index.fits.gz`` and ``obs-index.fits.gz`` for the written observations."""
    base_dir = Path(base_dir)
    n = len(plan)
    by_id = {r["obs_id"]: r for r in results}
    res = [by_id[int(o)] for o in plan.obs_id]
    rows_type, rows_class, rows_dir, rows_file, rows_name, rows_size, rows_obs = [], [], [], [], [], [], []
    kinds = [("events", "events", "EVENTS"), ("gti", "gti", "GTI"), ("pointing", "pointing", "POINTING")]
    kinds += [(t, irf_block.hdu_class[t], irf_block.hdu_name[t]) for t in IRF_TYPES]
    for hdu_type, hdu_class, hdu_name in kinds:
        shared = shared_irfs and hdu_type in IRF_TYPES
        rows_obs.append(plan.obs_id)
        rows_type.append(np.full(n, hdu_type))
        rows_class.append(np.full(n, hdu_class))
        rows_dir.append(np.full(n, SHARED_IRF_DIR if shared else "data"))
        rows_file.append(np.full(n, SHARED_IRF_FILE) if shared else np.array([obs_filename(o) for o in plan.obs_id]))
        rows_name.append(np.full(n, hdu_name))
        rows_size.append(np.array([r["sizes"][hdu_type] if not shared else irf_block.size[hdu_type] for r in res]))
    cols = {}
    for name, rows in (("OBS_ID", rows_obs), ("HDU_TYPE", rows_type), ("HDU_CLASS", rows_class),
                       ("FILE_DIR", rows_dir), ("FILE_NAME", rows_file), ("HDU_NAME", rows_name),
                       ("SIZE", rows_size)):
        arr = np.stack(rows, axis=1).ravel()  # (n_obs, n_kinds): rows grouped by observation
        cols[name] = arr.astype(np.int64) if name in ("OBS_ID", "SIZE") else arr.astype("S")
    hdu_table = Table(cols, meta=_index_meta("HDU", "HDU_INDEX"))
    hdu_table.write(base_dir / "hdu-index.fits.gz", overwrite=True)

    offset_obj = (angular_separation(plan.ra_pnt, plan.dec_pnt, source.ra, source.dec)
                  if source is not None else np.zeros(n))
    obs = Table(meta={**_index_meta("OBS", "OBS_INDEX"), "MJDREFI": MJDREFI, "MJDREFF": MJDREFF,
                      "TIMEUNIT": "s", "TIMESYS": "TT", "TIMEREF": "LOCAL", **HESS_SITE})
    f32 = np.float32
    obs["OBS_ID"] = plan.obs_id.astype(np.int64)
    for name, values, unit in (("RA_PNT", plan.ra_pnt, "deg"), ("DEC_PNT", plan.dec_pnt, "deg"),
                               ("GLON_PNT", plan.glon_pnt, "deg"), ("GLAT_PNT", plan.glat_pnt, "deg"),
                               ("ZEN_PNT", 90.0 - plan.alt_pnt, "deg"), ("ALT_PNT", plan.alt_pnt, "deg"),
                               ("AZ_PNT", plan.az_pnt, "deg")):
        obs[name] = values.astype(f32)
        obs[name].unit = unit
    obs["OBJECT"] = np.full(n, source.name if source is not None else "background").astype("S")
    obs["RA_OBJ"] = np.full(n, source.ra if source is not None else np.nan, dtype=f32)
    obs["DEC_OBJ"] = np.full(n, source.dec if source is not None else np.nan, dtype=f32)
    obs["OFFSET_OBJ"] = offset_obj.astype(f32)
    for name in ("RA_OBJ", "DEC_OBJ", "OFFSET_OBJ"):
        obs[name].unit = "deg"
    for name, values in (("ONTIME", plan.ontime), ("LIVETIME", plan.livetime)):
        obs[name] = values.astype(f32)
        obs[name].unit = "s"
    obs["DEADC"] = plan.deadc.astype(f32)
    obs["TSTART"] = plan.tstart.astype(np.float64)
    obs["TSTOP"] = plan.tstop.astype(np.float64)
    obs["TSTART"].unit = obs["TSTOP"].unit = "s"
    obs["DATE-OBS"] = plan.date_obs.astype("S")
    obs["TIME-OBS"] = plan.time_obs.astype("S")
    obs["DATE-END"] = plan.date_end.astype("S")
    obs["TIME-END"] = plan.time_end.astype("S")
    obs["N_TELS"] = np.full(n, 4, dtype=np.int64)
    obs["TELLIST"] = np.full(n, "1,2,3,4").astype("S")
    obs["QUALITY"] = np.zeros(n, dtype=np.int64)
    obs["MUONEFF"] = np.ones(n, dtype=f32)
    obs["EVENT_COUNT"] = np.array([r["n_events"] for r in res], dtype=np.int64)
    obs["TARGET_NAME"] = obs["OBJECT"]
    obs.write(base_dir / "obs-index.fits.gz", overwrite=True)


def simulate_datastore(
    path: str | Path,
    n_obs: int = 4,
    pointings=None,
    source: SourceModel | None = None,
    irfs: AnalyticIRFs | None = None,
    seed: int = 0,
    livetime: float = 1800.0,
    deadc: float = 0.95,
    obs_ids=None,
    background_only: bool = False,
    psf: str = "psf_3gauss",
    bkg: str = "bkg_3d",
    shared_irfs: bool = False,
    start_time: str = "2004-12-04T18:00:00",
    wobble_offset: float = 0.5,
    compresslevel: int = 6,
) -> Path:
    """Simulate observations of one source and write a GADF DL3 data store.

    Parameters
    ----------
    path : str or Path
        Output directory (created; existing files of the same names are overwritten).
    n_obs : int
        Number of observations (default 4), unless ``pointings`` / ``obs_ids`` give the number.
    pointings : array-like (n, 2) deg or SkyCoord, optional
        Pointing positions; default wobble offsets of ``wobble_offset`` deg N/S/E/W of the source.
    source : SourceModel, optional
        Default ``SourceModel()``: a Crab-like point source with a power law (index 2.6).
    irfs : AnalyticIRFs, optional
        Default ``AnalyticIRFs()`` (H.E.S.S.-like).
    seed : int
        Observation ``obs_id`` uses ``np.random.default_rng([seed, obs_id])``, so any subset of
        observations is reproducible on its own.
    livetime, deadc : float
        Live time per observation (s) and dead-time correction; ONTIME = livetime / deadc.
    obs_ids : array-like of int, optional
        Default ``1 .. n_obs``.
    background_only : bool
        Simulate no source events (OBJECT and truth still refer to ``source``'s position).
    psf : {"psf_3gauss", "psf_table"}
    bkg : {"bkg_3d", "bkg_2d"}
    shared_irfs : bool
        Write the IRFs once to ``caldb/irf_file.fits.gz`` (CTA caldb style, all index rows point
        there) instead of a copy in each observation file.
    start_time : str
        UTC time after which the first night starts (observations cluster around transit).
    wobble_offset : float
        Default wobble offset in deg.
    compresslevel : int
        gzip level of the files.

    Returns
    -------
    path : Path
        The data-store directory, containing ``hdu-index.fits.gz``, ``obs-index.fits.gz``,
        ``data/obs_XXXXXX.fits.gz`` (and ``caldb/`` when shared) and ``truth.json``.
    """
    path = Path(path)
    (path / "data").mkdir(parents=True, exist_ok=True)
    source = source if source is not None else SourceModel()
    irfs = irfs if irfs is not None else AnalyticIRFs()
    plan = plan_observations(n_obs, source.ra, source.dec, pointings=pointings, livetime=livetime,
                             deadc=deadc, obs_ids=obs_ids, start_time=start_time, wobble_offset=wobble_offset)
    block = build_irf_block(irfs, psf=psf, bkg=bkg, caldb_names=shared_irfs, compresslevel=compresslevel)
    if shared_irfs:
        (path / SHARED_IRF_DIR).mkdir(exist_ok=True)
        primary = gzip.compress(_PRIMARY_BYTES, compresslevel=compresslevel, mtime=0)
        (path / SHARED_IRF_DIR / SHARED_IRF_FILE).write_bytes(primary + block.gz)
    sim_source = None if background_only else source
    per_obs_block = None if shared_irfs else block
    results = [write_observation(path, plan, i, irfs, sim_source, seed, per_obs_block, compresslevel)
               for i in range(len(plan))]
    write_index_tables(path, plan, results, block, shared_irfs, source)
    summary = {
        "truth": truth(source),
        "background_only": background_only,
        "seed": int(seed),
        "n_obs": len(plan),
        "n_events": int(sum(r["n_events"] for r in results)),
        "n_signal": int(sum(r["n_signal"] for r in results)),
        "n_expected_signal": float(sum(r["n_expected_signal"] for r in results)),
        "n_expected_background": float(sum(r["n_expected_background"] for r in results)),
        "irfs": {k: (list(map(float, v)) if isinstance(v, (tuple, np.ndarray)) and np.ndim(v) == 1 and len(v) <= 3
                     else v) for k, v in asdict(irfs).items() if not isinstance(v, np.ndarray)},
        "formats": {"psf": psf, "bkg": bkg, "shared_irfs": shared_irfs},
    }
    (path / "truth.json").write_text(json.dumps(summary, indent=2))
    return path
