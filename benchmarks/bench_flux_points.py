"""Seed flux points (1, 2, 4, 10 TeV, reference best-fit parameters): gammapy 2.1 vs gamma_ray_dist.

Run: ``python benchmarks/bench_flux_points.py``. Each implementation reads the stacked reference dataset
fresh for each mode (cold model-evaluation caches), so times include the one model evaluation per
dataset our fast path needs.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from astropy import units as u

REF = Path(__file__).resolve().parents[2] / "shared" / "reference"
EDGES = [1, 2, 4, 10] * u.TeV
MODES = {"plain": None, "errn-errp+ul+scan": ["errn-errp", "ul", "scan"]}


def _run(library: str, seed: dict, selection):
    """Time the seed flux points with ``library`` (``gammapy`` or ``gamma_ray_dist``: same API)."""
    import importlib

    datasets = importlib.import_module(f"{library}.datasets")
    estimators = importlib.import_module(f"{library}.estimators")
    models_module = importlib.import_module(f"{library}.modeling.models")
    dataset = datasets.MapDataset.read(REF / "crab_stacked_gammapy.fits.gz")
    models = models_module.Models.from_yaml(seed["case"]["model"])
    models.append(models_module.FoVBackgroundModel(dataset_name=dataset.name))
    best = {(p["model"], p["name"]): p["value"] for p in seed["fit"]["parameters"]}
    for model in models:  # the reference calls the background model "stacked-bkg"
        for par in model.parameters:
            par.value = best[("stacked-bkg" if model.name.endswith("-bkg") else model.name, par.name)]
    dataset.models = models
    t0 = time.perf_counter()
    fp = estimators.FluxPointsEstimator(energy_edges=EDGES, source="crab", selection_optional=selection).run([dataset])
    return time.perf_counter() - t0, np.ravel(u.Quantity(fp.dnde).to_value("cm-2 s-1 TeV-1"))


def run_gammapy(seed: dict, selection):
    return _run("gammapy", seed, selection)


def run_ours(seed: dict, selection):
    return _run("gamma_ray_dist", seed, selection)


def main() -> None:
    seed = json.loads((REF / "crab_seed_gammapy.json").read_text())
    print(f"{'mode':20s} {'gammapy [s]':>12s} {'ours [s]':>10s} {'ratio':>8s} {'max |d dnde|/dnde':>18s}")
    for mode, selection in MODES.items():
        t_gp, dnde_gp = run_gammapy(seed, selection)
        t_ours, dnde_ours = run_ours(seed, selection)
        delta = np.max(np.abs(dnde_ours / dnde_gp - 1))
        print(f"{mode:20s} {t_gp:12.3f} {t_ours:10.3f} {t_gp / t_ours:7.1f}x {delta:18.2e}")


if __name__ == "__main__":
    main()
