"""Reproducible DL3 simulator: analytic H.E.S.S.-like IRFs, event sampling, GADF data-store writer.

Serves the offline demo (``gamma-ray-dist demo``), tests for IRF formats real data lacks and
known-truth recovery, and scale benchmarks (writing one observation takes ~10 ms).

Examples
--------
>>> from gamma_ray_dist.simulate import simulate_datastore, truth
>>> path = simulate_datastore("sim-store", n_obs=4, seed=0)   # doctest: +SKIP
>>> truth()["index"]
2.6
"""
from .datastore import (
    IRFBlock,
    build_irf_block,
    obs_filename,
    simulate_datastore,
    simulate_observation,
    write_index_tables,
    write_observation,
)
from .events import (
    SimulatedEvents,
    angular_separation,
    expected_background_counts,
    expected_signal_counts,
    fov_to_sky,
    offset_by,
    sample_events,
)
from .gadf import aeff_hdu, bkg_2d_hdu, bkg_3d_hdu, edisp_hdu, irf_hdus, psf_3gauss_hdu, psf_table_hdu
from .irfs import (
    AnalyticIRFs,
    aeff_values,
    bkg_values,
    edisp_bias,
    edisp_bin_pdf,
    edisp_pdf,
    edisp_sigma,
    psf_3gauss_params,
    psf_values,
)
from .schedule import ObservationPlan, altaz, plan_observations, wobble_pointings
from .source import SourceModel, truth

__all__ = [
    "AnalyticIRFs",
    "IRFBlock",
    "ObservationPlan",
    "SimulatedEvents",
    "SourceModel",
    "aeff_hdu",
    "aeff_values",
    "altaz",
    "angular_separation",
    "bkg_2d_hdu",
    "bkg_3d_hdu",
    "bkg_values",
    "build_irf_block",
    "edisp_bias",
    "edisp_bin_pdf",
    "edisp_hdu",
    "edisp_pdf",
    "edisp_sigma",
    "expected_background_counts",
    "expected_signal_counts",
    "fov_to_sky",
    "irf_hdus",
    "obs_filename",
    "offset_by",
    "plan_observations",
    "psf_3gauss_hdu",
    "psf_3gauss_params",
    "psf_table_hdu",
    "psf_values",
    "sample_events",
    "simulate_datastore",
    "simulate_observation",
    "truth",
    "wobble_pointings",
    "write_index_tables",
    "write_observation",
]
