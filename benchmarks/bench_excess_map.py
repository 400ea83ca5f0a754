"""Excess-map benchmark with the optional quantities: gammapy 2.1 vs ours, in one run.

    python benchmarks/bench_excess_map.py [--repeat 5]

On the seed stacked dataset (100 x 100 pixels, background only as in the tests), correlation radius
0.1 deg, for: the plain map; ``selection_optional="all"`` (errn-errp, ul, sensitivity; the on-off keys
give no map on a MapDataset); sensitivity with both floors on two energy bins. Prints best wall and CPU
time of each library, their ratio, and the largest relative difference of ``flux_sensitivity``.

`ExcessMapEstimator` runs in-process (a few global FFT convolutions; ``backend`` is accepted and not
used), so "ours" is our serial mode and there is no parallel column. The runs of the two libraries
are interleaved; the machine is usually shared: compare ratios of one run, not absolute times.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
from astropy import units as u

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench_sky_maps import best_interleaved  # noqa: E402  (the same interleaved timing as the TS map's)

SHARED = Path(os.environ.get("GRD_SHARED", ROOT.parent / "shared"))
REF = SHARED / "reference"

CASES = {
    "plain": dict(),
    "all (errn-errp, ul, sensitivity)": dict(selection_optional="all"),
    "sensitivity + floors, 2 bins": dict(selection_optional=["sensitivity"], apply_threshold_sensitivity=True,
                                         gamma_min_sensitivity=24, bkg_syst_fraction_sensitivity=118,
                                         energy_edges=[0.7, 2, 10] * u.TeV),
}


def datasets() -> dict:
    from tests.helpers import seed_best_fit_dataset

    ref = json.loads((REF / "crab_seed_gammapy.json").read_text())
    out = {}
    for lib in ("gammapy", "gamma_ray_dist"):
        ds = seed_best_fit_dataset(REF / "crab_stacked_gammapy.fits.gz", ref, library=lib)
        ds.models = [m for m in ds.models if m.name.endswith("-bkg")]
        out[lib] = ds
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    import warnings

    import gammapy.estimators as ge

    from gamma_ray_dist.estimators import ExcessMapEstimator

    warnings.simplefilter("ignore")
    data = datasets()
    print(f"seed excess map 100x100, correlation radius 0.1 deg, best of {args.repeat} | load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'case':36s} {'gammapy wall/CPU s':>20s} {'ours wall/CPU s':>18s} {'gammapy/ours':>13s} "
          f"{'max rel d flux_sensitivity':>27s}")
    for name, kw in CASES.items():
        kw = dict(kw, correlation_radius="0.1 deg")
        cpu: dict = {}
        res = best_interleaved({"gammapy": lambda: ge.ExcessMapEstimator(**kw).run(data["gammapy"]),
                                "ours": lambda: ExcessMapEstimator(**kw).run(data["gamma_ray_dist"])},
                               args.repeat, cpu)
        (w_gp, m_gp), (w_us, m_us) = res["gammapy"], res["ours"]
        c_gp, c_us = cpu["gammapy"], cpu["ours"]
        diff = "-"
        if "norm_sensitivity" in m_us.available_quantities:
            a, b = np.asarray(m_gp.flux_sensitivity.data), np.asarray(m_us.flux_sensitivity.data)
            diff = f"{np.nanmax(np.abs(b / a - 1)):.1e}"
        print(f"{name:36s} {w_gp:9.4f} / {c_gp:8.4f} {w_us:8.4f} / {c_us:7.4f} {w_gp / w_us:12.1f}x {diff:>27s}")


if __name__ == "__main__":
    main()
