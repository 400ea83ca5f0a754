"""gamma_ray_dist: a distributed parallel reducer for IACT gamma-ray astronomy on Ray.

The public API mirrors gammapy's names for the 3D "low level API" analysis; see docs/architecture.md.
"""
__version__ = "0.1.0"
