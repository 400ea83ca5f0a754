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


def seed_best_fit_dataset(path, seed_reference: dict, library: str = "gamma_ray_dist", errors: bool = False):
    """The stacked seed dataset at ``path`` with the seed models at gammapy's best fit.

    ``library`` is ``"gamma_ray_dist"`` or ``"gammapy"``: both expose the same names, so the same code
    builds the dataset in either (the peer's side of a side-by-side test).
    """
    import importlib

    datasets = importlib.import_module(f"{library}.datasets")
    models_module = importlib.import_module(f"{library}.modeling.models")
    dataset = datasets.MapDataset.read(path)
    models = models_module.Models.from_yaml(seed_reference["case"]["model"])
    models.append(models_module.FoVBackgroundModel(dataset_name=dataset.name))
    set_seed_best_fit(models, seed_reference, errors=errors)
    dataset.models = models
    return dataset
