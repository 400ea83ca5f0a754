"""Shared pytest fixtures: data locations, gammapy availability, one Ray session per test run."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED = Path(os.environ.get("GRD_SHARED", Path(__file__).resolve().parents[2] / "shared"))
HESS_DR1 = SHARED / "data" / "hess-dl3-dr1"
REFERENCE = SHARED / "reference"


@pytest.fixture(scope="session")
def hess_dr1() -> Path:
    """Path of the H.E.S.S. DL3 DR1 data store; skips when absent."""
    if not (HESS_DR1 / "hdu-index.fits.gz").exists():
        pytest.skip(f"H.E.S.S. DL3 DR1 not found at {HESS_DR1}")
    return HESS_DR1


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    if not REFERENCE.exists():
        pytest.skip(f"reference results not found at {REFERENCE}")
    return REFERENCE


@pytest.fixture(scope="session")
def seed_reference(reference_dir):
    import json

    return json.loads((reference_dir / "crab_seed_gammapy.json").read_text())


@pytest.fixture(scope="session")
def ray_session():
    """A local Ray with 2 CPUs, started once per test session."""
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
