"""The end-to-end analysis behind ``gamma-ray-dist run``: inputs, tasks, fitting, orchestration.

- `inputs`: config -> data store, selected obs ids, stacked geometry, exclusion mask, `ReductionSpec`;
- `tasks`: the per-observation Ray task and the summary-keeping accumulator;
- `fitting`: models, fit, likelihood profiles / MINOS errors, flux points (serial or on workers);
- `run`: `run_pipeline` and the run report;
- `unstacked`: one dataset per observation (``datasets.stack: false``), `reduce_groups` (one stacked
  dataset per group of observations: time intervals, nights, in one pass);
- `demo`: simulated Crab-like data store + config for ``gamma-ray-dist demo``.

Names are resolved lazily: a Ray process that only unpickles the accumulator factory
(`tasks.SummaryAccumulator`) does not import the fitting and I/O modules.
"""
from importlib import import_module

_EXPORTS = {"run_pipeline": "run", "PipelineOptions": "run", "PipelineResult": "run", "NothingReduced": "run",
            "reduce_groups": "unstacked", "group_dataset": "unstacked"}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
