"""Time writing a simulated GADF data store: ms per observation written.

Run: ``python benchmarks/bench_simulate.py [--n-obs 100] [--repeat 3] [--shared-irfs] [--compresslevel 6]``.
Each repeat writes a fresh store (``gamma_ray_dist.simulate.simulate_datastore``, seed 0) into a
temporary directory (deleted afterwards) in this process, on one core; the best and median wall times
are printed. (This was a print in ``tests/test_simulate.py``; a test asserts, a benchmark measures.)
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def time_write(n_obs: int, **kwargs) -> float:
    """Wall seconds to simulate and write ``n_obs`` observations into a fresh directory."""
    from gamma_ray_dist.simulate import simulate_datastore

    with tempfile.TemporaryDirectory(prefix="bench-simulate-") as tmp:
        t0 = time.perf_counter()
        simulate_datastore(Path(tmp) / "store", n_obs=n_obs, seed=0, **kwargs)
        return time.perf_counter() - t0


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-obs", type=int, default=100, help="observations per store (default 100)")
    p.add_argument("--repeat", type=int, default=3, help="stores written (default 3)")
    p.add_argument("--shared-irfs", action="store_true", help="one IRF file shared by all observations")
    p.add_argument("--compresslevel", type=int, default=6, help="gzip level of the files (default 6)")
    args = p.parse_args(argv)
    import gamma_ray_dist.simulate  # noqa: F401  (imports outside the timing)

    times = [time_write(args.n_obs, shared_irfs=args.shared_irfs, compresslevel=args.compresslevel)
             for _ in range(max(1, args.repeat))]
    best, median = min(times), statistics.median(times)
    print(f"[simulate] {args.n_obs} observations written: best {best:.2f} s ({1e3 * best / args.n_obs:.1f} ms/obs), "
          f"median {median:.2f} s ({1e3 * median / args.n_obs:.1f} ms/obs) over {len(times)} runs")


if __name__ == "__main__":
    main()
