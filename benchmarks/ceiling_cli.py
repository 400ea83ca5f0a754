"""``gamma-ray-dist run`` with the reduction on 2 plain OS processes (no Ray): the 2-worker ceiling.

Usage (same arguments as ``gamma-ray-dist run``; ``bench_cli.py --ceiling`` runs it beside the others)::

    python benchmarks/ceiling_cli.py run demo.yaml --models demo_models.yaml --out OUT --serial

The command line is the real one (`gamma_ray_dist.cli.main`); only the backend differs: its ``reduce``
folds the plan's blocks in a ``multiprocessing`` pool of 2 fresh (spawned) processes, one block per
job, pulled as the processes free up (the best a scheduler can do), and merges the returned block
states in block order in this process exactly as `SerialBackend` does (so ``stacked.fits.gz`` is
bit-identical to ``--serial``). Nothing else runs: no object store, no reducer process, no raylet,
no GCS. Any 2-worker scheme, Ray included, pays at least this: two interpreters importing the
reduction code, states pickled through a pipe, and two processes sharing the two CPUs. Its CPU per
observation and wall time against ``--serial`` are the machine's ceiling for Ray's.
"""
from __future__ import annotations

import multiprocessing as mp
import sys
import time
from typing import Any, Iterable

_SHARED: Any = None


def _init(shared: Any) -> None:
    global _SHARED
    _SHARED = shared


def _fold(job: tuple[int, tuple[int, ...]]) -> tuple[int, list, Any]:
    from gamma_ray_dist.distributed.blocks import fold_block

    index, block = job
    task_fn, value, make_accumulator, strict = _SHARED
    statuses, state = fold_block(task_fn, value, block, make_accumulator, strict)
    return index, statuses, state


def _make_backend_class():
    from actors.ordered import OrderedReducer
    from gamma_ray_dist.distributed.backend import SerialBackend, _SerialTree
    from gamma_ray_dist.distributed.blocks import ReductionPlan, resolve_block_size, sorted_unique
    from gamma_ray_dist.distributed.report import RunReport, RunResult

    class TwoProcessBackend(SerialBackend):
        """`SerialBackend` whose block folds run in a pool of 2 spawned processes."""

        name = "serial"  # settings accept only the real names; the report says "two-process"

        @property
        def cpus(self) -> int:
            return 2

        def reduce(self, obs_ids: Iterable[int], task_fn, shared, make_accumulator, **overrides: Any) -> RunResult:
            for key in ("run_dir", "root_checkpoint_every", "checkpoint_every", "wait_timeout", "config_hash",
                        "reducer_options"):
                overrides.pop(key, None)  # no checkpoints here: the least a run can do
            s = self._run_settings(overrides)
            t0 = time.perf_counter()
            ids, dups = sorted_unique(obs_ids)
            plan = ReductionPlan.create(ids, s.block_size, s.merge_fan_in)
            report = RunReport(s.run_id or "two-process", "two-process", resolve_block_size(s.block_size, len(ids)),
                               len(plan.blocks),
                               s.merge_fan_in, duplicate_obs_ids=dups, n_reducers=plan.n_reducers)
            states: list = [None] * len(plan.blocks)
            ctx = mp.get_context("spawn")
            with ctx.Pool(2, initializer=_init, initargs=((task_fn, shared, make_accumulator, s.strict),)) as pool:
                for index, statuses, state in pool.imap_unordered(_fold, list(enumerate(plan.blocks))):
                    report.n_tasks += 1
                    for obs_id, status in zip(plan.blocks[index], statuses):
                        report.record(status, obs_id)
                    states[index] = state
            tree = _SerialTree(plan, make_accumulator, OrderedReducer)  # the serial merge, in block order
            for index, state in enumerate(states):
                tree.add(index, state)
            final = tree.result()
            report.timings["tasks"] = report.timings["total"] = time.perf_counter() - t0
            return RunResult(final, report)

    return TwoProcessBackend


def main(argv: list[str] | None = None) -> int:
    import gamma_ray_dist.distributed as distributed
    from gamma_ray_dist import cli

    backend_cls = _make_backend_class()
    distributed.make_backend = lambda settings: backend_cls(settings)  # the CLI looks it up at run time
    return cli.main(argv)


if __name__ == "__main__":
    sys.exit(main())
