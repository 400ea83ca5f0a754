"""Helpers shared by test modules (fixtures live in conftest.py)."""
from __future__ import annotations


def set_seed_best_fit(models, seed_reference: dict, errors: bool = False):
    """Set gammapy's best-fit values (and errors) from crab_seed_gammapy.json on the seed models.

    Works on models of either library (same names). The reference calls the background model
    ``stacked-bkg``; the stacked dataset's own is ``<dataset name>-bkg``.
    """
    best = {(p["model"], p["name"]): p for p in seed_reference["fit"]["parameters"]}
    for model in models:
        key = "stacked-bkg" if model.name.endswith("-bkg") else model.name
        for par in model.parameters:
            par.value = best[(key, par.name)]["value"]
            if errors:
                par.error = best[(key, par.name)]["error"]
    return models
