"""A joint likelihood sharded over Ray actors: each actor holds a fixed slice of the datasets, read
from their files by the actor itself; the head's `Fit` sees a `Datasets` whose ``stat_sum()`` asks
every actor at once for the Cash statistics of its datasets.

Design (against the per-call round trips and model shipping that made a "one actor per dataset,
models sent per call" layout slow):

- shards are contiguous runs of the datasets in their given order (`shard_bounds`); each `FitShard`
  actor reads its files once and keeps them; the head keeps names and paths only;
- the models go to each actor once (only the models its datasets use), with the parameter layout
  (`ShardLayout`: for each of the shard's unique parameters, its index among the head's);
- one likelihood evaluation = one call per actor with the parameter values that changed since the
  last call (a small index array and a float array: typically the one or two parameters MIGRAD
  moved), all actors called at once and gathered with one ``ray.get``; each replies with the float64
  statistics of its datasets, in dataset order;
- the head adds them in dataset order starting from 0.0, exactly as `Datasets.stat_sum` does in one
  process: the total is the serial total bit for bit, whatever the number of actors, so MIGRAD and
  HESSE follow the serial path and give the same values and errors.

`Fit` needs no change: `ShardedDatasets` is a `Datasets` whose items are light stand-ins
(`ShardedDataset`: a name, the models that apply to it, and the fit prechecks the actor computed).

The choice between this and an in-process `Datasets` is `choose_fit_mode` (measured crossover, see
`SHARDED_MIN_BINS`) through `joint_datasets(entries, models, backend)`: a serial backend always fits
in-process.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import DatasetFileError, DataStoreError
from ..modeling.dataset import Dataset, Datasets
from ..modeling.models import Models

__all__ = ["DatasetEntry", "read_datasets_index", "check_entries", "shard_bounds", "ShardLayout", "FitShard",
           "ShardedDataset", "ShardedDatasets", "read_datasets", "choose_fit_mode", "joint_datasets",
           "SHARDED_MIN_BINS", "count_bins"]

log = logging.getLogger(__name__)

#: Total fit bins (datasets x energy bins x pixels) from which a joint fit on 2 local Ray actors beats
#: the in-process fit, actor start and file reading included (Ray already running): ~64 seed-like
#: datasets of 40,000 bins (a source + power law free, background norms frozen). Measured with
#: ``benchmarks/bench_joint_fit.py`` on 2 shared cores: the in-process fit costs ~0.285 s a dataset
#: (read + ~95 evaluations), the sharded one ~5 s to start its actors + ~0.21 s a dataset; at 32
#: datasets the sharded fit was still 0.96x, at 100 1.11x (see benchmarks/README.md).
SHARDED_MIN_BINS = 2_500_000


@dataclass(frozen=True)
class DatasetEntry:
    """One dataset of a joint fit: its name and the file `MapDataset.read` loads."""

    name: str
    path: str


def read_datasets_index(filename: str | Path) -> list[DatasetEntry]:
    """Entries of a datasets index YAML (gammapy's ``Datasets.write`` layout), read by
    `modeling.dataset.read_datasets_index`: relative file names are taken relative to the index's
    directory, and the files are not opened (see `check_entries`).

    Raises
    ------
    DatasetFileError
        The index cannot be read, lacks a key, or lists a dataset that is not a ``MapDataset``.
    """
    from ..modeling.dataset import read_datasets_index as read_index

    path = Path(filename).expanduser()
    entries = []
    for item in read_index(path, check_files=False):
        if item["type"] != "MapDataset":
            raise DatasetFileError(f"dataset {item['name']!r} has type {item['type']!r}; the sharded fit "
                                   f"reads MapDataset only", str(path))
        entries.append(DatasetEntry(str(item["name"]), item["filename"]))
    return entries


def _as_entries(entries: Any) -> list[DatasetEntry]:
    if isinstance(entries, (str, Path)):
        return read_datasets_index(entries)
    out = []
    for e in entries:
        out.append(e if isinstance(e, DatasetEntry) else DatasetEntry(str(e[0]), str(e[1])))
    return out


def check_entries(entries: Sequence[DatasetEntry]) -> None:
    """Raise `DataStoreError` naming the first missing file or duplicated name (nothing is read)."""
    if not entries:
        raise DataStoreError("no datasets to fit: the list of dataset files is empty")
    seen = set()
    for e in entries:
        if e.name in seen:
            raise DataStoreError(f"dataset name {e.name!r} appears twice (file {e.path})")
        seen.add(e.name)
        if not os.path.isfile(e.path):
            raise DataStoreError(f"dataset {e.name!r}: file not found: {e.path}")


def shard_bounds(n_datasets: int, n_shards: int) -> list[tuple[int, int]]:
    """Contiguous ``[start, stop)`` slices of the dataset order, sizes differing by at most one."""
    n_shards = max(1, min(int(n_shards), n_datasets))
    edges = [(k * n_datasets) // n_shards for k in range(n_shards + 1)]
    return [(edges[k], edges[k + 1]) for k in range(n_shards)]


def count_bins(path: str | Path) -> int:
    """Bins of the COUNTS map of a dataset file, from its header only."""
    from astropy.io import fits

    header = fits.getheader(str(path), "COUNTS")
    return int(np.prod([header.get(f"NAXIS{i}", 1) for i in range(1, header.get("NAXIS", 0) + 1)]))


def read_datasets(entries: Any, models: Any = None) -> Datasets:
    """The in-process `Datasets` of ``entries`` (index path or list of (name, path)), models set."""
    from ..datasets.map import MapDataset

    entries = _as_entries(entries)
    check_entries(entries)
    datasets = Datasets([MapDataset.read(e.path, name=e.name) for e in entries])
    if models is not None:
        datasets.models = models
    return datasets


# --- the actor's state (plain Python: also what the tests drive without Ray) -----------------------
@dataclass(frozen=True)
class ShardLayout:
    """Where one shard's parameters sit among the head's unique parameters.

    ``index[j]`` is the head position of the shard's ``j``-th unique parameter (the order of
    ``Models.parameters.unique_parameters`` of the shard's models, which pickling preserves);
    ``names`` are their unique names, checked by the actor.
    """

    index: np.ndarray
    names: tuple[str, ...]


class FitShard:
    """The datasets of one shard, their models, and the statistic per dataset (what an actor holds).

    Parameters
    ----------
    entries : list of DatasetEntry
        Read here, once (`MapDataset.read`), in order.
    """

    def __init__(self, entries: Sequence[DatasetEntry]):
        from ..datasets.map import MapDataset

        self.rss_before_kb = _rss_kb("VmRSS:")  # the process before reading: the shard's own share is above
        self.names = [e.name for e in entries]
        self.datasets = []
        self.error: str | None = None  # a file that cannot be read: reported by `prechecks`, not raised
        for e in entries:
            try:
                self.datasets.append(MapDataset.read(e.path, name=e.name))
            except Exception as exc:  # noqa: BLE001 - reported to the head with the file named
                self.error = f"dataset {e.name!r}: cannot read {e.path}: {type(exc).__name__}: {exc}"
                self.datasets = []
                break
        self.parameters: list = []
        self.stat_cpu_s = 0.0  # CPU seconds spent in `stats` (the ceiling of a sharded evaluation)
        self.n_bins = int(sum(d.counts.data.size for d in self.datasets if d.counts is not None))

    def set_models(self, models: Models, layout: ShardLayout) -> int:
        """Attach this shard's copy of the models; returns the number of parameters in the layout."""
        for d, selected in zip(self.datasets, _models_by_dataset(models, self.names)):
            d.models = selected
        pars = models.parameters.unique_parameters
        names = tuple(_unique_names(models))
        if len(pars) != len(layout.index) or names != layout.names:
            raise RuntimeError(f"parameter layout mismatch on shard {self.names[:1]}...: "
                               f"{len(pars)} parameters here, {len(layout.index)} on the head")
        self.parameters = list(pars)
        return len(self.parameters)

    def set_values(self, index: np.ndarray, values: np.ndarray) -> None:
        """Set the parameters at ``index`` (shard positions) to ``values`` (exact floats)."""
        pars = self.parameters
        for i, v in zip(index.tolist(), values.tolist()):
            pars[i].value = v

    def stats(self, index: np.ndarray, values: np.ndarray) -> np.ndarray | tuple[str, str]:
        """Cash statistic of each dataset (float64, dataset order) after `set_values`.

        A ``ValueError``/``ArithmeticError`` of a dataset (e.g. a model stepped off the map) is
        returned as ``(type name, message)`` so the head raises it as the serial fit would.
        """
        c0 = time.process_time()
        self.set_values(index, values)
        out = np.empty(len(self.datasets))
        try:
            for i, d in enumerate(self.datasets):
                out[i] = d.stat_sum()
        except (ValueError, ArithmeticError) as exc:
            return (type(exc).__name__, f"dataset {d.name!r}: {exc}")
        finally:
            self.stat_cpu_s += time.process_time() - c0
        return out

    def prechecks(self) -> list[list[str]] | str:
        """`MapDataset.fit_precheck` of each dataset, or the read error (a string)."""
        if self.error is not None:
            return self.error
        return [d.fit_precheck() for d in self.datasets]

    def coverages(self, index: np.ndarray, values: np.ndarray) -> list[dict | None]:
        self.set_values(index, values)
        return [d.model_coverage() for d in self.datasets]

    def info(self) -> dict:
        """Process id, datasets and bins held, peak resident memory (kB) and CPU seconds of this process."""
        return {"pid": os.getpid(), "n_datasets": len(self.datasets), "n_bins": self.n_bins,
                "peak_rss_kb": _peak_rss_kb(), "rss_before_kb": self.rss_before_kb, "cpu_s": time.process_time(),
                "stat_cpu_s": self.stat_cpu_s}


def _rss_kb(key: str) -> int:
    """A memory line of ``/proc/self/status`` in kB (0 where there is none)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _peak_rss_kb() -> int:
    """Peak resident memory of this process (kB)."""
    peak = _rss_kb("VmHWM:")
    if peak:
        return peak
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def _models_by_dataset(models: Models, names: Sequence[str]) -> list[list]:
    """For each dataset name, the models that apply to it (the `Dataset.models` selection, in order).

    Setting a dataset's models to its own short list selects the same models as setting the whole
    collection, without building a collection of every model once per dataset (quadratic in the
    number of datasets when each has its own background model).
    """
    common: dict[int, Any] = {}
    named: dict[str, dict[int, Any]] = {}
    for i, m in enumerate(models):
        if m.datasets_names is None:
            common[i] = m
        else:
            for name in m.datasets_names:
                named.setdefault(name, {})[i] = m
    return [[m for _, m in sorted({**common, **named.get(name, {})}.items())] for name in names]


def _unique_names(models: Models) -> list[str]:
    """Unique names of ``models.parameters.unique_parameters``, in that order."""
    seen, out = set(), []
    for p, n in zip(models.parameters, models.parameters_unique_names):
        if id(p) not in seen:
            seen.add(id(p))
            out.append(n)
    return out


_ACTOR_CLASS = None


def _actor_class():
    """`FitShard` as a Ray actor class (one CPU each), created once per process."""
    global _ACTOR_CLASS
    if _ACTOR_CLASS is None:
        import ray

        _ACTOR_CLASS = ray.remote(num_cpus=1, max_restarts=0)(FitShard)
    return _ACTOR_CLASS


# --- the head's side ----------------------------------------------------------------------------
class ShardedDataset(Dataset):
    """Stand-in for one dataset held by an actor: name, models, prechecks; no data on the head."""

    tag = "MapDataset"

    def __init__(self, name: str, owner: "ShardedDatasets", position: int):
        super().__init__(name)
        self._owner = owner
        self._position = position
        self._precheck: list[str] = []

    def stat_sum(self) -> float:
        """This dataset's statistic (computed with all others: one gathered call)."""
        return float(self._owner.stat_values()[self._position])

    def fit_precheck(self) -> list[str]:
        return list(self._precheck)

    def model_coverage(self) -> dict[str, float] | None:
        return self._owner._coverage(self._position)

    def __deepcopy__(self, memo):
        raise TypeError("a sharded dataset lives in a Ray actor and cannot be copied; read it with MapDataset.read")


class ShardedDatasets(Datasets):
    """Datasets held by `FitShard` actors; the head holds names, models and paths only.

    Create with `ShardedDatasets.open` (or `joint_datasets`); use as any `Datasets` with `Fit`
    (``Fit().run(sharded)``); `close` (or a ``with`` block) ends the actors.
    """

    def __init__(self, entries: Sequence[DatasetEntry], actors: list, bounds: list[tuple[int, int]]):
        super().__init__()
        self.entries = list(entries)
        self._actors = actors
        self._bounds = bounds
        self._datasets = [ShardedDataset(e.name, self, i) for i, e in enumerate(self.entries)]
        self._all_params: list = []
        self._layouts: list[ShardLayout] = []
        self._sent: list[np.ndarray] = []
        self._last: tuple[np.ndarray, np.ndarray] | None = None  # (values, stats) of the last evaluation
        self._coverage_cache: tuple[np.ndarray, list] | None = None
        self.n_calls = 0
        self.timings = {"stat": 0.0}

    # construction --------------------------------------------------------------------------------
    @classmethod
    def open(cls, entries: Any, models: Any = None, n_shards: int = 2) -> "ShardedDatasets":
        """Start ``n_shards`` actors (at most one per dataset) on the running Ray, each reading its slice.

        ``entries``: a datasets index YAML path or a list of (name, path); missing files raise
        `DataStoreError` before any actor starts.
        """
        import ray

        entries = _as_entries(entries)
        check_entries(entries)
        bounds = shard_bounds(len(entries), n_shards)
        actor_cls = _actor_class()
        # one CPU per actor, or a share when there are more shards than CPUs (e.g. 3 on 2 CPUs)
        cpus = float(ray.cluster_resources().get("CPU", 1.0))
        each = min(1.0, cpus / len(bounds))
        actors = [actor_cls.options(num_cpus=each).remote(entries[a:b]) for a, b in bounds]
        self = cls(entries, actors, bounds)
        try:
            prechecks = ray.get([a.prechecks.remote() for a in actors])
        except Exception:
            self.close()
            raise
        errors = [shard for shard in prechecks if isinstance(shard, str)]
        if errors:
            self.close()
            raise DataStoreError(errors[0])
        for (a, _), shard in zip(bounds, prechecks):
            for j, problems in enumerate(shard):
                self._datasets[a + j]._precheck = list(problems)
        if models is not None:
            try:
                self.models = models
            except BaseException:
                self.close()
                raise
        return self

    @property
    def n_shards(self) -> int:
        return len(self._actors)

    @property
    def models(self) -> Models:
        return Datasets.models.fget(self)

    @models.setter
    def models(self, models: Any) -> None:
        """Set the models on the stand-ins and send each actor the ones its datasets use, once."""
        import ray

        models = Models(models)
        for d, selected in zip(self._datasets, _models_by_dataset(models, self.names)):
            d.models = selected
        joint = Datasets.models.fget(self)
        self._all_params = list(joint.parameters.unique_parameters)
        position = {id(p): i for i, p in enumerate(self._all_params)}
        calls, self._layouts = [], []
        for actor, (a, b) in zip(self._actors, self._bounds):
            used: dict[int, Any] = {}
            for d in self._datasets[a:b]:
                for m in d.models or []:
                    used.setdefault(id(m), m)
            # keep the head's model order (first-seen over the shard's datasets = serial order)
            subset = Models(list(used.values()))
            pars = subset.parameters.unique_parameters
            layout = ShardLayout(np.array([position[id(p)] for p in pars], dtype=np.int64),
                                 tuple(_unique_names(subset)))
            self._layouts.append(layout)
            calls.append(actor.set_models.remote(subset, layout))
        ray.get(calls)
        # the actors' values are the models' values now
        values = self._values()
        self._sent = [values[layout.index] for layout in self._layouts]
        self._last = None
        self._coverage_cache = None

    # evaluation ----------------------------------------------------------------------------------
    def _values(self) -> np.ndarray:
        return np.fromiter((p.value for p in self._all_params), dtype=float, count=len(self._all_params))

    def _deltas(self, values: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per actor: (shard positions, values) of the parameters changed since its last call."""
        out = []
        for k, layout in enumerate(self._layouts):
            current = values[layout.index]
            changed = np.flatnonzero(~(current == self._sent[k]))  # NaN counts as changed
            out.append((changed.astype(np.int32), current[changed]))
            self._sent[k] = current
        return out

    def stat_values(self) -> np.ndarray:
        """Statistic of every dataset (dataset order) at the current parameter values."""
        import ray

        if not self._layouts:
            raise RuntimeError("ShardedDatasets has no models: set .models first")
        values = self._values()
        if self._last is not None and np.array_equal(values, self._last[0]):
            return self._last[1]
        t0 = time.perf_counter()
        deltas = self._deltas(values)
        try:
            replies = ray.get([actor.stats.remote(idx, vals) for actor, (idx, vals) in zip(self._actors, deltas)])
        except BaseException:
            self._sent = [np.full(len(l.index), np.nan) for l in self._layouts]  # resend all next time
            raise
        self.n_calls += 1
        self.timings["stat"] += time.perf_counter() - t0
        for reply in replies:
            if isinstance(reply, tuple):
                kind, message = reply
                raise (ArithmeticError if kind in ("ArithmeticError", "FloatingPointError", "ZeroDivisionError",
                                                  "OverflowError") else ValueError)(message)
        stats = np.concatenate(replies)
        self._last = (values, stats)
        return stats

    def stat_sum(self) -> float:
        """Sum of the datasets' statistics in dataset order (the same float as `Datasets.stat_sum`)."""
        total = 0.0
        for value in self.stat_values().tolist():
            total += value
        return total

    def _coverage(self, position: int) -> dict | None:
        import ray

        values = self._values()
        if self._coverage_cache is None or not np.array_equal(self._coverage_cache[0], values):
            deltas = self._deltas(values)
            shards = ray.get([actor.coverages.remote(idx, vals) for actor, (idx, vals) in zip(self._actors, deltas)])
            self._coverage_cache = (values, [c for shard in shards for c in shard])
        return self._coverage_cache[1][position]

    def info(self) -> list[dict]:
        """`FitShard.info` of every actor (pid, datasets, bins, peak RSS)."""
        import ray

        return ray.get([a.info.remote() for a in self._actors])

    # a read-only list ------------------------------------------------------------------------------
    def __getitem__(self, key):
        if isinstance(key, slice):
            raise TypeError("ShardedDatasets cannot be sliced; open a new one on the entries wanted")
        return super().__getitem__(key)

    def __setitem__(self, key, dataset) -> None:
        raise TypeError("ShardedDatasets is read-only")

    def __delitem__(self, key) -> None:
        raise TypeError("ShardedDatasets is read-only")

    def insert(self, idx: int, dataset: Dataset) -> None:
        raise TypeError("ShardedDatasets is read-only")

    def copy(self) -> "ShardedDatasets":
        raise TypeError("ShardedDatasets lives in Ray actors and cannot be copied")

    def close(self) -> None:
        """End the actors (their datasets are freed)."""
        import ray

        for actor in self._actors:
            try:
                ray.kill(actor)
            except Exception:  # noqa: BLE001 - already gone
                pass
        self._actors = []

    def __enter__(self) -> "ShardedDatasets":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# --- the choice -----------------------------------------------------------------------------------
def choose_fit_mode(n_bins_total: int, cpus: int, min_bins: int = SHARDED_MIN_BINS) -> tuple[str, str]:
    """``("sharded" | "serial", reason)`` for a joint fit of ``n_bins_total`` bins on ``cpus`` workers."""
    if cpus < 2:
        return "serial", f"{cpus} CPU: sharding cannot run anything in parallel"
    if n_bins_total < min_bins:
        return "serial", (f"{n_bins_total:,} bins < {min_bins:,} (measured crossover): in-process fit is faster")
    return "sharded", f"{n_bins_total:,} bins >= {min_bins:,} (measured crossover): sharded over {cpus} actors"


def joint_datasets(entries: Any, models: Any, backend: Any = None, mode: str = "auto",
                   n_shards: int | None = None) -> Datasets:
    """The datasets of a joint fit, in-process or sharded over the backend's Ray.

    Parameters
    ----------
    entries : str, Path or list of (name, path)
        A datasets index YAML or the dataset files, in fit order.
    models : Models or list
        The joint models (e.g. a source and one ``FoVBackgroundModel(dataset_name=...)`` per dataset).
    backend : SerialBackend, RayBackend, AutoBackend or None
        None or a serial backend: in-process. A Ray backend: sharded over ``backend.cpus`` actors
        when the fit is above the crossover (`choose_fit_mode`). An undecided `AutoBackend` starts
        Ray only when the fit is above the crossover.
    mode : {"auto", "serial", "sharded"}
        Force a mode ("sharded" needs a Ray backend).

    Returns
    -------
    Datasets
        A `ShardedDatasets` (close it when done) or an in-process `Datasets`; ``choice`` attribute
        ``(mode, reason)`` on both.
    """
    entries = _as_entries(entries)
    check_entries(entries)
    name = getattr(backend, "name", "serial")
    if name == "auto" and getattr(backend, "chosen", None) is not None:
        backend, name = backend.chosen, backend.chosen.name
    if mode not in ("auto", "serial", "sharded"):
        raise ValueError(f"mode must be 'auto', 'serial' or 'sharded', got {mode!r}")
    if name == "serial":
        choice = ("serial", "serial backend: the fit runs in this process")
    elif mode != "auto":
        choice = (mode, "asked for")
    else:
        cpus = backend.cpus if name == "ray" else int(backend.settings.num_cpus or os.cpu_count() or 1)
        # one header: datasets of a joint fit share their geometry in practice
        choice = choose_fit_mode(count_bins(entries[0].path) * len(entries), cpus)
    if choice[0] == "sharded":
        if name == "auto":
            backend = backend.choose("ray", f"joint fit: {choice[1]}")
        datasets = ShardedDatasets.open(entries, models, n_shards=n_shards or backend.cpus)
    else:
        datasets = read_datasets(entries, models)
    datasets.choice = choice
    log.info("joint fit of %d datasets: %s (%s)", len(entries), *choice)
    return datasets
