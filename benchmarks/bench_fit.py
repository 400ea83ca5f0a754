"""Seed fit benchmark: gammapy 2.1 and gamma_ray_dist side by side on the same stacked Crab dataset.

Measures, in one process and alternating the two libraries:

- the seed fit (MIGRAD + HESSE) from the seed start values: wall time, nfev, total stat;
- the seed flux points (1, 2, 4, 10 TeV), plain and with errn-errp + ul + scan (`bench_flux_points`);
- an 11-point re-optimised likelihood profile of every free parameter (``Fit.stat_profile(...,
  reoptimize=True)``), starting from each library's best fit.

Usage::

    python benchmarks/bench_fit.py [--repeat 3] [--no-flux-points] [--no-profile] [--dataset PATH]

Times are the best of ``--repeat`` runs (the machine is shared; the minimum is the least noisy).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from astropy import units as u

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT.parent / "shared" / "reference"
SEED = dict(index=2.702, amplitude=4.712e-11, lon_0=83.63308, lat_0=22.0145)


def _models(mod, dataset_name: str) -> list:
    spectral = mod.PowerLawSpectralModel(index=SEED["index"], amplitude=SEED["amplitude"] * u.Unit("cm-2 s-1 TeV-1"),
                                         reference=1 * u.TeV)
    spatial = mod.PointSpatialModel(lon_0=SEED["lon_0"] * u.deg, lat_0=SEED["lat_0"] * u.deg, frame="icrs")
    return [mod.SkyModel(spectral, spatial, name="crab"), mod.FoVBackgroundModel(dataset_name=dataset_name)]


def _libraries():
    import gammapy.datasets as gd
    import gammapy.modeling as gfit
    import gammapy.modeling.models as gm

    import gamma_ray_dist.datasets.map as od
    import gamma_ray_dist.modeling as ofit
    import gamma_ray_dist.modeling.models as om

    return {
        "gammapy": (gd.MapDataset, gfit.Fit, gm),
        "ours": (od.MapDataset, ofit.Fit, om),
    }


def _fresh(lib, path):
    dataset_cls, _, mod = lib
    ds = dataset_cls.read(path)
    ds.models = _models(mod, ds.name)
    return ds


def bench_fit(lib, path, repeat: int) -> dict:
    best = None
    for _ in range(repeat):
        ds = _fresh(lib, path)
        t0 = time.perf_counter()
        result = lib[1]().run([ds])
        dt = time.perf_counter() - t0
        row = {"time": dt, "nfev": int(result.nfev), "stat": float(result.total_stat),
               "success": bool(result.success), "dataset": ds}
        if best is None or dt < best["time"]:
            best = row
    return best


def _free_names(ds) -> list[str]:
    names = []
    for m in ds.models:
        for p in m.parameters:
            if not p.frozen:
                names.append((m, p))
    return names


def bench_profiles(lib, ds) -> dict:
    fit = lib[1]()
    out = {}
    for model, par in _free_names(ds):
        par.scan_n_values = 11
        t0 = time.perf_counter()
        prof = fit.stat_profile([ds], par, reoptimize=True)
        dt = time.perf_counter() - t0
        stat = np.asarray(prof["stat_scan"], float)
        out[f"{model.name}.{par.name}"] = {"time": dt, "stat_min": float(np.min(stat)),
                                           "delta_max": float(np.max(stat) - np.min(stat))}
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-flux-points", action="store_true")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--dataset", default=str(REFERENCE / "crab_stacked_gammapy.fits.gz"))
    parser.add_argument("--json", help="write the numbers to this file")
    args = parser.parse_args(argv)

    libs = _libraries()
    fits = {name: bench_fit(lib, args.dataset, args.repeat) for name, lib in libs.items()}
    g, o = fits["gammapy"], fits["ours"]
    print(f"{'seed fit':24s} {'gammapy':>10s} {'ours':>10s} {'ratio':>8s}")
    print(f"{'time [s]':24s} {g['time']:10.3f} {o['time']:10.3f} {g['time'] / o['time']:8.1f}x")
    print(f"{'nfev':24s} {g['nfev']:10d} {o['nfev']:10d}")
    print(f"{'ms / evaluation':24s} {1e3 * g['time'] / g['nfev']:10.2f} {1e3 * o['time'] / o['nfev']:10.2f}")
    print(f"{'total stat':24s} {g['stat']:10.3f} {o['stat']:10.3f}  (delta {o['stat'] - g['stat']:+.2e})")
    report = {"fit": {k: {kk: vv for kk, vv in v.items() if kk != "dataset"} for k, v in fits.items()}}

    if not args.no_flux_points:
        import bench_flux_points as bfp  # beside this script

        seed = json.loads((REFERENCE / "crab_seed_gammapy.json").read_text())
        print(f"\n{'flux points':24s} {'gammapy':>10s} {'ours':>10s} {'ratio':>8s}  max |d dnde|/dnde")
        report["flux_points"] = {}
        for mode, selection in bfp.MODES.items():
            t_gp, dnde_gp = bfp.run_gammapy(seed, selection)
            t_ours, dnde_ours = bfp.run_ours(seed, selection)
            delta = float(np.max(np.abs(dnde_ours / dnde_gp - 1)))
            print(f"{mode:24s} {t_gp:10.3f} {t_ours:10.3f} {t_gp / t_ours:8.1f}x  {delta:.2e}")
            report["flux_points"][mode] = {"gammapy": t_gp, "ours": t_ours, "max_rel_diff_dnde": delta}

    if not args.no_profile:
        profiles = {name: bench_profiles(lib, fits[name]["dataset"]) for name, lib in libs.items()}
        print(f"\n{'profile (11 pts, reopt.)':24s} {'gammapy':>10s} {'ours':>10s} {'ratio':>8s}  max dstat g / o")
        tg = to = 0.0
        for key in profiles["gammapy"]:
            pg, po = profiles["gammapy"][key], profiles["ours"].get(key)
            if po is None:
                continue
            tg, to = tg + pg["time"], to + po["time"]
            print(f"{key:24s} {pg['time']:10.2f} {po['time']:10.2f} {pg['time'] / po['time']:8.1f}x"
                  f"  {pg['delta_max']:.2f} / {po['delta_max']:.2f}")
        print(f"{'all profiles':24s} {tg:10.2f} {to:10.2f} {tg / to:8.1f}x")
        report["profiles"] = profiles
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
