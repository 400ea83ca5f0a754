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


def _set_models(models, best):
    for model in models:
        for par in model.parameters:
            par.value = best[("stacked-bkg" if model.name.endswith("-bkg") else model.name, par.name)]


def run_gammapy(seed: dict, selection):
    from gammapy.datasets import MapDataset
    from gammapy.estimators import FluxPointsEstimator
    from gammapy.modeling.models import FoVBackgroundModel, Models

    dataset = MapDataset.read(REF / "crab_stacked_gammapy.fits.gz")
    models = Models.from_yaml(seed["case"]["model"])
    models.append(FoVBackgroundModel(dataset_name=dataset.name))
    _set_models(models, {(p["model"], p["name"]): p["value"] for p in seed["fit"]["parameters"]})
    dataset.models = models
    t0 = time.perf_counter()
    fp = FluxPointsEstimator(energy_edges=EDGES, source="crab", selection_optional=selection).run([dataset])
    return time.perf_counter() - t0, fp.dnde.quantity.to_value("cm-2 s-1 TeV-1").ravel()


def run_ours(seed: dict, selection):
    from gamma_ray_dist.datasets.map import MapDataset
    from gamma_ray_dist.estimators import FluxPointsEstimator
    from gamma_ray_dist.modeling.models import FoVBackgroundModel, Models

    dataset = MapDataset.read(REF / "crab_stacked_gammapy.fits.gz")
    models = Models.from_yaml(seed["case"]["model"])
    models.append(FoVBackgroundModel(dataset_name=dataset.name))
    _set_models(models, {(p["model"], p["name"]): p["value"] for p in seed["fit"]["parameters"]})
    dataset.models = models
    t0 = time.perf_counter()
    fp = FluxPointsEstimator(energy_edges=EDGES, source="crab", selection_optional=selection).run([dataset])
    return time.perf_counter() - t0, fp.dnde.to_value("cm-2 s-1 TeV-1")


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
