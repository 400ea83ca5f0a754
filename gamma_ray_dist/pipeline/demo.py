"""``gamma-ray-dist demo``: simulate a small Crab-like data store, write a matching config and models.

Everything is made locally by `gamma_ray_dist.simulate` (analytic H.E.S.S.-like IRFs), so the demo
needs no network and no data directory.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ..config import AnalysisConfig

__all__ = ["prepare_demo", "demo_config_dict", "demo_models_dict"]


def demo_config_dict(datastore: str | Path, ra: float, dec: float) -> dict[str, Any]:
    """The seed analysis (2 x 2 deg, 0.02 deg pixels, 1-10 TeV) around ``(ra, dec)`` on ``datastore``."""
    return {
        "general": {"outdir": "."},
        "observations": {"datastore": str(datastore), "required_irf": ["aeff", "edisp", "psf", "bkg"]},
        "datasets": {
            "type": "3d",
            "stack": True,
            "geom": {
                "wcs": {"skydir": {"frame": "icrs", "lon": f"{ra} deg", "lat": f"{dec} deg"},
                        "binsize": "0.02 deg", "width": {"width": "2 deg", "height": "2 deg"},
                        "binsize_irf": "0.2 deg"},
                "selection": {"offset_max": "2.5 deg"},
                "axes": {"energy": {"min": "1 TeV", "max": "10 TeV", "nbins": 4},
                         # 16 bins per decade: coarser true-energy bins bias the fitted index of a
                         # steep spectrum across the 1 TeV threshold (+0.055 with 10 bins, measured on
                         # 1000 simulated observations; tests/test_simulate_bias.py)
                         "energy_true": {"min": "0.5 TeV", "max": "20 TeV", "nbins": 40}},
            },
            "safe_mask": {"methods": ["offset-max", "aeff-max"], "parameters": {"offset_max": "2.5 deg"}},
            "background": {"method": "fov_background", "parameters": {"method": "fit"},
                           "exclusion_regions": [f"icrs;circle({ra},{dec},0.3)"]},
        },
        "fit": {"fit_range": {"min": "1 TeV", "max": "10 TeV"}},
        "flux_points": {"energy": {"edges": [1, 2, 4, 10], "unit": "TeV"}, "source": "crab",
                        "parameters": {"selection_optional": None}},
    }


def demo_models_dict(truth: dict[str, Any]) -> dict[str, Any]:
    """Start models: a point source with a power law, started away from the true values."""
    return {"components": [{
        "name": "crab",
        "type": "SkyModel",
        "spectral": {"type": "PowerLawSpectralModel", "parameters": [
            {"name": "index", "value": 2.3},
            {"name": "amplitude", "value": 2e-11, "unit": "cm-2 s-1 TeV-1"},
            {"name": "reference", "value": float(truth["reference"]), "unit": "TeV", "frozen": True},
        ]},
        "spatial": {"type": "PointSpatialModel", "frame": "icrs", "parameters": [
            {"name": "lon_0", "value": float(truth["lon_0"]) + 0.02, "unit": "deg"},
            {"name": "lat_0", "value": float(truth["lat_0"]) - 0.02, "unit": "deg"},
        ]},
    }]}


def prepare_demo(out_dir: str | Path, n_obs: int = 4, seed: int = 0) -> tuple[AnalysisConfig, Path, dict]:
    """Simulate ``n_obs`` observations into ``out_dir/data``; write ``demo.yaml`` and ``demo_models.yaml``.

    Returns
    -------
    (config, models_path, truth)
        ``truth`` maps parameter names (``index``, ``amplitude``, ``lon_0``, ``lat_0``...) to true values.
    """
    from ..simulate import SourceModel, simulate_datastore, truth as source_truth

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    source = SourceModel()
    datastore = simulate_datastore(out / "data", n_obs=n_obs, source=source, seed=seed)
    truth = {k: v for k, v in source_truth(source).items() if isinstance(v, (int, float))}
    config_data = demo_config_dict(datastore.resolve(), source.ra, source.dec)
    config_data["general"]["outdir"] = str(out)
    (out / "demo.yaml").write_text(yaml.safe_dump(config_data, sort_keys=False))
    models_path = out / "demo_models.yaml"
    models_path.write_text(yaml.safe_dump(demo_models_dict(truth), sort_keys=False))
    return AnalysisConfig.from_dict(config_data), models_path, truth
