"""Unstacked analysis (``datasets.stack: false``) on H.E.S.S. DR1: gammapy vs ours, serial and Ray.

One run prints, side by side, the wall and CPU seconds of

- gammapy 2.1: ``DatasetsMaker(stack_datasets=False)`` (trim cutouts of 2 x offset_max, the seed's
  makers), ``Datasets.write`` (index + one file per observation), joint ``Fit().run`` with a
  ``FoVBackgroundModel`` per dataset (what its ``Analysis`` does with ``stack: false``);
- ours, serial: ``run_pipeline`` of the same config with ``stack: false`` (reduction, per-observation
  files written as reduced, read back, joint fit, flux points), ``report=False``;
- ours, Ray (``RayBackend``, started before timing): the same;
- ours, stacked, serial: the default analysis, for the cost of keeping the observations apart;

with the ratios to gammapy and to our serial mode, and checks that the Ray datasets equal the serial
ones bit for bit and that the joint fits agree with gammapy's.

CPU is this process's (``time.process_time``): for the Ray run it leaves out the workers' CPU (and the
Ray run includes its workers' start: they are not pre-started). Our per-process caches are warmed by
an untimed run on the first observation. The machine is usually shared: figures are indicative.

Usage::

    python benchmarks/bench_unstacked.py [--obs-ids 23523 23526 23559 23592] [--num-cpus 2] [--skip-gammapy]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = Path(os.environ.get("HESS_DR1", ROOT.parent / "shared" / "data" / "hess-dl3-dr1"))
CONFIG = ROOT / "examples" / "crab_3d.yaml"
MODELS = ROOT / "examples" / "crab_models.yaml"


def _timed(fn):
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w0, time.process_time() - c0


def _config(obs_ids, stack: bool):
    from gamma_ray_dist.config import AnalysisConfig

    text = CONFIG.read_text().replace("$GAMMAPY_DATA/hess-dl3-dr1", str(DATA))
    text = text.replace("stack: true", f"stack: {'true' if stack else 'false'}")
    text = text.replace("    obs_cone: {frame: icrs, lon: 83.633 deg, lat: 22.014 deg, radius: 5 deg}\n",
                        f"    obs_ids: [{', '.join(str(i) for i in obs_ids)}]\n")
    return AnalysisConfig.from_yaml(text)


def run_gammapy(obs_ids, out: Path) -> dict:
    from astropy import units as u
    from astropy.coordinates import SkyCoord
    from gammapy.data import DataStore
    from gammapy.datasets import MapDataset
    from gammapy.makers import DatasetsMaker, FoVBackgroundMaker, MapDatasetMaker, SafeMaskMaker
    from gammapy.maps import MapAxis, WcsGeom
    from gammapy.modeling import Fit
    from gammapy.modeling.models import FoVBackgroundModel, Models
    from regions import CircleSkyRegion

    centre = SkyCoord(83.633, 22.014, unit="deg")
    geom = WcsGeom.create(skydir=centre, binsz=0.02, width=(2, 2), frame="icrs", proj="CAR",
                          axes=[MapAxis.from_energy_bounds(1, 10, 4, unit="TeV")])
    etrue = MapAxis.from_energy_bounds(0.5, 20, 10, unit="TeV", name="energy_true")
    reference = MapDataset.create(geom, energy_axis_true=etrue, binsz_irf=0.2 * u.deg, name="stacked")
    exclusion = ~geom.to_image().region_mask([CircleSkyRegion(SkyCoord(83.63, 22.14, unit="deg"), 0.2 * u.deg)])
    makers = [MapDatasetMaker(selection=["counts", "exposure", "background", "psf", "edisp"]),
              SafeMaskMaker(methods=["offset-max", "aeff-max"], offset_max=2.5 * u.deg),
              FoVBackgroundMaker(method="fit", exclusion_mask=exclusion)]
    observations = DataStore.from_dir(DATA).get_observations(obs_ids)
    datasets = DatasetsMaker(makers, stack_datasets=False, cutout_mode="trim",
                             cutout_width=5 * u.deg).run(reference, observations)
    datasets.write(out / "datasets.yaml", overwrite=True)
    emin, emax = 1 * u.TeV, 10 * u.TeV
    for d in datasets:
        d.mask_fit = d.counts.geom.energy_mask(emin, emax * (1 + 1e-9))
    models = Models.read(MODELS)
    # gammapy's Analysis.set_models: the datasets' own FoV models (their fitted norms) are kept
    models.extend([m for m in datasets.models if isinstance(m, FoVBackgroundModel)])
    datasets.models = models
    result = Fit().run(datasets)
    return {"success": result.success, "total_stat": result.total_stat,
            "values": {f"{m.name}.{p.name}": p.value for m in datasets.models for p in m.parameters if not p.frozen}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--obs-ids", type=int, nargs="+", default=[23523, 23526, 23559, 23592])
    parser.add_argument("--num-cpus", type=int, default=2)
    parser.add_argument("--skip-gammapy", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    from gamma_ray_dist.distributed import RayBackend, SerialBackend
    from gamma_ray_dist.pipeline import PipelineOptions, run_pipeline

    work = Path(tempfile.mkdtemp(prefix="bench-unstacked-"))
    rows, figures = [], {}

    def ours(name, backend, stack):
        options = PipelineOptions(models=MODELS, out_dir=work / name, report=False)
        result, wall, cpu = _timed(lambda: run_pipeline(_config(args.obs_ids, stack), options, backend))
        rows.append((name, wall, cpu, result.timings.get("reduce", float("nan"))))
        return result

    # untimed warm-up of our per-process caches (geometry, makers, IRF grids) on the first observation,
    # so that the timed runs compare like with like whatever their order
    run_pipeline(_config(args.obs_ids[:1], True), PipelineOptions(models=MODELS, out_dir=work / "warm", report=False),
                 SerialBackend(progress=False))
    if not args.skip_gammapy:
        (work / "gammapy").mkdir()
        gp, wall, cpu = _timed(lambda: run_gammapy(args.obs_ids, work / "gammapy"))
        rows.append(("gammapy unstacked", wall, cpu, float("nan")))
    serial = ours("ours unstacked serial", SerialBackend(progress=False), stack=False)
    with RayBackend(num_cpus=args.num_cpus, progress=False) as ray_backend:
        ray_backend.start()
        ray = ours(f"ours unstacked ray {args.num_cpus} cpus", ray_backend, stack=False)
    ours("ours stacked serial", SerialBackend(progress=False), stack=True)

    base = {name: wall for name, wall, _, _ in rows}
    ref_serial = base["ours unstacked serial"]
    ref_gp = base.get("gammapy unstacked")
    print(f"{len(args.obs_ids)} observations of H.E.S.S. DR1 (seed settings); wall/CPU in s (CPU: this process)")
    print(f"{'run':32} {'wall':>8} {'cpu':>8} {'reduce':>8} {'gammapy/x':>10} {'serial/x':>9}")
    for name, wall, cpu, reduce in rows:
        print(f"{name:32} {wall:8.2f} {cpu:8.2f} {reduce:8.2f} "
              f"{(ref_gp / wall if ref_gp else float('nan')):10.2f} {ref_serial / wall:9.2f}")
    identical = all(np.array_equal(getattr(a, k).data, getattr(b, k).data)
                    for a, b in zip(serial.datasets, ray.datasets) for k in ("counts", "background", "exposure"))
    print(f"ray datasets bit-identical to serial: {identical}")
    ours_values = {f"{p['model']}.{p['name']}": p["value"] for p in serial.fit["parameters"] if not p["frozen"]}
    print(f"ours: success={serial.fit['success']} total_stat={serial.fit['total_stat']:.3f}")
    if not args.skip_gammapy:
        print(f"gammapy: success={gp['success']} total_stat={gp['total_stat']:.3f}")
        for key in ("crab.index", "crab.amplitude", "crab.lon_0", "crab.lat_0"):
            a, b = ours_values.get(key), gp["values"].get(key)
            if a is not None and b is not None:
                print(f"  {key:16} ours {a:.6g} gammapy {b:.6g} rel.diff {abs(a - b) / abs(b):.2e}")
        figures["gammapy"] = gp
    figures["rows"] = rows
    figures["bit_identical"] = identical
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1, default=str))


if __name__ == "__main__":
    main()
