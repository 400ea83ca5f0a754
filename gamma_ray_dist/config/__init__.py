"""Analysis configuration: gammapy's high-level ``AnalysisConfig`` YAML (3D stacked subset) + extensions.

The YAML schema is gammapy 2.1's (``gammapy/analysis/config.py``), with the same keys and defaults, so a
user's existing file reads unchanged. Values are validated once, here, into small frozen dataclasses
holding plain values and astropy ``Quantity`` objects in canonical units (angles in deg, energies in
TeV). Every error is a :class:`~gamma_ray_dist.errors.ConfigError` naming the full dotted key.

Our extensions (rejected by gammapy, dropped by ``to_yaml(gammapy_compatible=True)``):

- ``general.steps``: list of steps to run (empty = all);
- ``datasets.background.exclusion_regions``: DS9 region strings (sky regions, with a frame);
- ``flux_points.energy: {edges: [...], unit: TeV}``: explicit flux-point energy edges;
- ``ray: {address, num_cpus, max_in_flight, block_size, merge_fan_in, strict}``.

``light_curve`` is validated (`LightCurveConfig`) and asks for a light curve when it sets energy_edges or
time_intervals. Sections gammapy knows but a 3D stacked run does not use (``excess_map``,
``datasets.on_region``, ``datasets.containment_correction``, ``metadata``) are accepted and ignored.

Examples
--------
>>> cfg = AnalysisConfig.read("examples/crab_3d.yaml")  # doctest: +SKIP
>>> cfg.datasets.geom.wcs.binsize  # doctest: +SKIP
<Quantity 0.02 deg>
"""
from .sections import *  # noqa: F401,F403  (the public names are listed in sections.__all__)
from .sections import __all__  # noqa: F401
