"""The gammapy "low level API" tutorial (analysis_2), run on gamma_ray_dist.

This is the code of gammapy's ``tutorials/starting/analysis_2.py`` with **only the imports changed**
from ``gammapy.*`` to ``gamma_ray_dist.*``: a 3D stacked analysis of the Crab nebula with the
H.E.S.S. DL3 DR1 data (data store, observation selection, geometry, ``MapDataset.create``, the
makers loop with cutout / ``MapDatasetMaker`` / ``SafeMaskMaker`` / ``FoVBackgroundMaker``, stacking,
writing, models, ``Fit`` and ``FluxPointsEstimator``).

Differences from the tutorial, none of which touch the analysis:

- the plots run only with ``--plot`` and are written as PNG files into the output folder
  (``plt.show()`` becomes ``savefig``; the notebook-only ``plot_interactive`` becomes a plain ``plot``);
- ``check_tutorials_setup()`` (gammapy.utils.check) has no counterpart and is skipped;
- the background norm of each observation is kept in ``bkg_norms`` (the tutorial only prints it);
- ``--out`` chooses where the ``analysis_2/`` folder goes (default: the current directory).

Data: ``$GAMMAPY_DATA/hess-dl3-dr1``. This work made use of data from the H.E.S.S. DL3 public test
data release 1 (HESS DL3 DR1, H.E.S.S. collaboration, 2018). No new scientific claims may be derived
from these data.

Run::

    GAMMAPY_DATA=/path/to/gammapy-data python examples/seed_low_level.py [--plot] [--out DIR]
"""
import argparse
import os
from pathlib import Path

from astropy import units as u
from astropy.coordinates import SkyCoord
from regions import CircleSkyRegion

from gamma_ray_dist.data import DataStore
from gamma_ray_dist.datasets import MapDataset
from gamma_ray_dist.estimators import FluxPointsEstimator
from gamma_ray_dist.makers import FoVBackgroundMaker, MapDatasetMaker, SafeMaskMaker
from gamma_ray_dist.maps import MapAxis, WcsGeom
from gamma_ray_dist.modeling import Fit
from gamma_ray_dist.modeling.models import (
    FoVBackgroundModel,
    PointSpatialModel,
    PowerLawSpectralModel,
    SkyModel,
)

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--plot", action="store_true", help="make the tutorial's plots as PNG files")
parser.add_argument("--out", default=".", help="folder in which analysis_2/ is created (default: .)")
args = parser.parse_args()

if args.plot:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gamma_ray_dist.visualization import plot_npred_signal

_figures = []


def show(name):
    """The tutorial's ``plt.show()``: save the current figure as ``analysis_2/<name>.png``."""
    filename = path / f"{name}.png"
    plt.savefig(filename, dpi=80)
    plt.close("all")
    _figures.append(filename)
    print(f"wrote {filename}")


# Checked before anything is written: a wrong GAMMAPY_DATA is one line and exit code 2.
if "GAMMAPY_DATA" not in os.environ:
    parser.exit(2, f"{parser.prog}: error: set GAMMAPY_DATA to the folder that contains hess-dl3-dr1/\n")
if not (Path(os.environ["GAMMAPY_DATA"]) / "hess-dl3-dr1" / "hdu-index.fits.gz").is_file():
    parser.exit(2, f"{parser.prog}: error: GAMMAPY_DATA={os.environ['GAMMAPY_DATA']} has no "
                   "hess-dl3-dr1/hdu-index.fits.gz (set it to the folder that contains hess-dl3-dr1/)\n")

path = Path(args.out) / "analysis_2"
path.mkdir(parents=True, exist_ok=True)

# ---------------------------------------------------------------------------------------------
# Defining the datastore and selecting observations
# ---------------------------------------------------------------------------------------------
data_store = DataStore.from_dir("$GAMMAPY_DATA/hess-dl3-dr1")

selection = dict(
    type="sky_circle",
    frame="icrs",
    lon="83.633 deg",
    lat="22.014 deg",
    radius="5 deg",
)
selected_obs_table = data_store.obs_table.select_observations(selection)

observations = data_store.get_observations(selected_obs_table["OBS_ID"])

if args.plot:
    observations[0].peek()
    show("observation_peek")
print(observations[0])

# ---------------------------------------------------------------------------------------------
# Preparing reduced datasets geometry
# ---------------------------------------------------------------------------------------------
energy_axis = MapAxis.from_energy_bounds(1.0, 10.0, 4, unit="TeV")

geom = WcsGeom.create(
    skydir=(83.633, 22.014),
    binsz=0.02,
    width=(2, 2),
    frame="icrs",
    proj="CAR",
    axes=[energy_axis],
)

# Reduced IRFs are defined in true energy (i.e. not measured energy).
energy_axis_true = MapAxis.from_energy_bounds(
    0.5, 20, 10, unit="TeV", name="energy_true"
)

stacked = MapDataset.create(
    geom=geom, energy_axis_true=energy_axis_true, name="crab-stacked"
)

# ---------------------------------------------------------------------------------------------
# Data reduction
# ---------------------------------------------------------------------------------------------
offset_max = 2.5 * u.deg
maker = MapDatasetMaker()
maker_safe_mask = SafeMaskMaker(
    methods=["offset-max", "aeff-max"], offset_max=offset_max
)

circle = CircleSkyRegion(center=SkyCoord("83.63 deg", "22.14 deg"), radius=0.2 * u.deg)
exclusion_mask = ~geom.region_mask(regions=[circle])
maker_fov = FoVBackgroundMaker(method="fit", exclusion_mask=exclusion_mask)

bkg_norms = {}
for obs in observations:
    # First a cutout of the target map is produced
    cutout = stacked.cutout(
        obs.get_pointing_icrs(obs.tmid), width=2 * offset_max, name=f"obs-{obs.obs_id}"
    )
    # A MapDataset is filled in this cutout geometry
    dataset = maker.run(cutout, obs)
    # The data quality cut is applied
    dataset = maker_safe_mask.run(dataset, obs)
    # fit background model
    dataset = maker_fov.run(dataset)
    print(
        f"Background norm obs {obs.obs_id}: {dataset.background_model.spectral_model.norm.value:.2f}"
    )
    bkg_norms[int(obs.obs_id)] = float(dataset.background_model.spectral_model.norm.value)
    # The resulting dataset cutout is stacked onto the final one
    stacked.stack(dataset)

print(stacked)

# Inspect the reduced dataset
if args.plot:
    stacked.counts.sum_over_axes().smooth(0.05 * u.deg).plot(stretch="sqrt", add_cbar=True)
    show("counts")

# ---------------------------------------------------------------------------------------------
# Save dataset to disk
# ---------------------------------------------------------------------------------------------
filename = path / "crab-stacked-dataset.fits.gz"
stacked.write(filename, overwrite=True)

# ---------------------------------------------------------------------------------------------
# Define the model
# ---------------------------------------------------------------------------------------------
target_position = SkyCoord(ra=83.63308, dec=22.01450, unit="deg")
spatial_model = PointSpatialModel(
    lon_0=target_position.ra, lat_0=target_position.dec, frame="icrs"
)

spectral_model = PowerLawSpectralModel(
    index=2.702,
    amplitude=4.712e-11 * u.Unit("1 / (cm2 s TeV)"),
    reference=1 * u.TeV,
)

sky_model = SkyModel(
    spatial_model=spatial_model, spectral_model=spectral_model, name="crab"
)

bkg_model = FoVBackgroundModel(dataset_name="crab-stacked")

stacked.models = [sky_model, bkg_model]

# ---------------------------------------------------------------------------------------------
# Fit the model
# ---------------------------------------------------------------------------------------------
fit = Fit(optimize_opts={"print_level": 1})
result = fit.run([stacked])

print(result)

print(stacked.models.to_parameters_table())

if args.plot:
    plot_npred_signal(stacked)
    show("npred_signal")

    # Inspecting residuals
    stacked.plot_residuals_spatial(method="diff/sqrt(model)", vmin=-0.5, vmax=0.5)
    show("residuals_spatial")

    region = CircleSkyRegion(center=SkyCoord("83.63 deg", "22.14 deg"), radius=0.5 * u.deg)

    stacked.plot_residuals(
        kwargs_spatial=dict(method="diff/sqrt(model)", vmin=-0.5, vmax=0.5),
        kwargs_spectral=dict(region=region),
    )
    show("residuals")

    residuals = stacked.residuals(method="diff")
    # the tutorial calls plot_interactive (a notebook widget); a static plot of the cube here
    residuals.smooth("0.08 deg").plot_grid(
        cmap="coolwarm", vmin=-0.2, vmax=0.2, stretch="linear", add_cbar=True
    )
    show("residuals_smoothed")

# ---------------------------------------------------------------------------------------------
# Plot the fitted spectrum
# ---------------------------------------------------------------------------------------------
spec = sky_model.spectral_model

energy_bounds = [1, 10] * u.TeV

if args.plot:
    fig, ax = plt.subplots(figsize=(8, 6))
    spec.plot(ax=ax, energy_bounds=energy_bounds, sed_type="e2dnde")
    spec.plot_error(ax=ax, energy_bounds=energy_bounds, sed_type="e2dnde")
    show("butterfly")

# ---------------------------------------------------------------------------------------------
# Computing flux points
# ---------------------------------------------------------------------------------------------
energy_edges = [1, 2, 4, 10] * u.TeV
fpe = FluxPointsEstimator(energy_edges=energy_edges, source="crab")

flux_points = fpe.run(datasets=[stacked])

if args.plot:
    fig, ax = plt.subplots(figsize=(8, 6))
    spec.plot(ax=ax, energy_bounds=energy_bounds, sed_type="e2dnde")
    spec.plot_error(ax=ax, energy_bounds=energy_bounds, sed_type="e2dnde")
    flux_points.plot(ax=ax, sed_type="e2dnde")
    show("flux_points")
