"""The run directory: what makes a reduction resumable after its driver is killed (Ray-free).

A run directory (by default ``<out>/.grd-run``, see `RUN_DIR_NAME`) holds

``run.json``
    What the run is: the configuration hash (`config_hash.run_config_hash`), a short hash per part of
    the configuration (to say *what* differs when a rerun does not match), the observation ids (their
    digest and count) and the number of attempts.
``status.jsonl``
    One JSON line per reduced block: its obs ids and their statuses (ok, or failed with the error
    type, message and file). Written and fsynced *before* the block's state is sent to its reducer,
    so every block a checkpoint holds has its statuses here.
``checkpoints/root.pkl``, ``checkpoints/groupNNNNN.pkl``
    The reducers' checkpoints (`actors.checkpoints`; private files, refused unless ours and written
    for this configuration). Their JSON header says how many keys (blocks, or groups of blocks) they
    hold, which the driver reads without unpickling anything.
``lock``
    ``flock``-ed by the running driver: a second run on the same directory is refused while the first
    is alive (the kernel drops the lock of a killed process).

A rerun with the same configuration and observations (`RunDir.open`) *resumes*: `RunDir.plan_resume`
reads the checkpoint headers, and the blocks they hold are neither reduced nor sent again (their
statuses come from ``status.jsonl``); the reducers restore the same checkpoints. The merge order is
fixed by the plan (blocks in order, `actors.ordered.OrderedReducer`), and a restored state is the
exact float64/int64 buffers, so the result is bit-identical to an uninterrupted run, on either
backend (serial and Ray write the same checkpoints). A rerun of another configuration is refused
(`RunDirError`, one line naming the directory and what differs) unless ``fresh`` discards the old run.

The owner of the run decides its end: `RunDir.finish` removes the directory (the pipeline does so
once every output is written), `RunDir.discard` too (a failure a rerun would repeat), and
`RunDir.close` keeps it (interrupted: resumable).
"""
from __future__ import annotations

import dataclasses
import errno
import fcntl
import hashlib
import json
import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from actors.checkpoints import CheckpointRefused, keys_digest, read_checkpoint_header

from ..errors import GammaRayDistError
from .blocks import ReductionPlan, sorted_unique

__all__ = ["RUN_DIR_NAME", "RUN_FORMAT", "CHECKPOINT_EVERY", "RunDir", "RunDirError", "Resumed",
           "describe_components"]

log = logging.getLogger(__name__)

#: Name of the run directory inside the output directory.
RUN_DIR_NAME = ".grd-run"

#: Layout version of ``run.json`` / ``status.jsonl``; another version is not resumed.
RUN_FORMAT = 1

#: Merges between two checkpoints of a serial run's root (a Ray root checkpoints as often:
#: `driver.DEFAULT_ROOT_CHECKPOINT_EVERY`) and of its group reducers.
CHECKPOINT_EVERY = {"root": 4, "group": 8}

_STATUS_KEYS = ("ok", "error_type", "message", "filename", "seconds", "started", "worker", "timings")


class RunDirError(GammaRayDistError):
    """The run directory cannot be used: another configuration's run, in use, or inconsistent."""


@dataclass
class Resumed:
    """What a run directory already holds for a plan.

    Attributes
    ----------
    root : int
        Keys the root checkpoint holds (blocks, or groups when the plan has groups).
    groups : dict
        Group index -> blocks its checkpoint holds (groups beyond ``root`` only).
    blocks : frozenset of int
        Every block whose state is durable.
    statuses : dict
        Block index -> the statuses of its observations (from ``status.jsonl``).
    """

    root: int = 0
    groups: dict[int, int] = field(default_factory=dict)
    blocks: frozenset = frozenset()
    statuses: dict[int, list[dict[str, Any]]] = field(default_factory=dict)

    def n_obs(self, plan: ReductionPlan) -> int:
        return sum(len(plan.blocks[b]) for b in self.blocks)


def _short(value: Any) -> str:
    from ..reduction.spec import digest_update

    digest = hashlib.sha256()
    digest_update(value, digest)
    return digest.hexdigest()[:16]


def describe_components(task_fn: Any, shared: Any, make_accumulator: Any, block_size: int | None,
                        merge_fan_in: int) -> dict[str, str]:
    """A short hash per part of a run's configuration (the parts of `run_config_hash`), one level into
    a dict ``shared`` and its dataclass values, so a mismatch can say which part differs."""
    from .config_hash import _describe

    parts: dict[str, str] = {"task function": _short(_describe(task_fn))}
    if isinstance(shared, dict):
        for key in sorted(shared, key=str):
            value = shared[key]
            if dataclasses.is_dataclass(value) and not isinstance(value, type):
                for f in dataclasses.fields(value):
                    parts[f"{key}.{f.name}"] = _short(_describe(getattr(value, f.name)))
            else:
                parts[str(key)] = _short(_describe(value))
    else:
        parts["task input"] = _short(_describe(shared))
    parts["accumulator"] = _short(_describe(make_accumulator))
    parts["ray.block_size"] = "auto" if block_size is None else str(int(block_size))
    parts["ray.merge_fan_in"] = str(int(merge_fan_in))
    return parts


def _obs_digest(ids: list[int]) -> str:
    return hashlib.sha256(json.dumps(ids).encode()).hexdigest()[:32]


class RunDir:
    """A run directory, opened (and locked) for one run; see the module docstring.

    Create with `open`. ``config_hash`` is what the reducers write into and check against their
    checkpoints; ``checkpoint_dir`` is where they live; ``resuming`` says whether an earlier attempt
    left something (``attempt`` counts the attempts, this one included).
    """

    def __init__(self, path: Path, config_hash: str, ids: list[int], lock_fd: int, *, resuming: bool,
                 attempt: int, announce: bool = True) -> None:
        self.path = path
        self.config_hash = config_hash
        self.ids = ids
        self.resuming = resuming
        self.attempt = attempt
        self.announce = announce
        self._lock_fd: int | None = lock_fd
        self._journal = None
        self.n_resumed = 0
        self._last_resume: tuple[ReductionPlan, Resumed] | None = None

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoints"

    # -- opening -----------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike, *, obs_ids: Iterable[int], task_fn: Any, shared: Any,
             make_accumulator: Any, block_size: int | None, merge_fan_in: int, fresh: bool = False,
             announce: bool = True) -> "RunDir":
        """Open ``path`` for a run of this configuration: resume what it holds, or start it empty.

        Raises
        ------
        RunDirError
            It holds an unfinished run of another configuration or observation list (unless
            ``fresh``: then that run is discarded), or another live process uses it.
        """
        from .config_hash import run_config_hash

        path = Path(path)
        ids, _ = sorted_unique(obs_ids)
        config_hash = run_config_hash(task_fn, shared, make_accumulator, block_size, merge_fan_in)
        components = describe_components(task_fn, shared, make_accumulator, block_size, merge_fan_in)
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        lock_fd = _lock(path)
        try:
            previous = None if fresh else _read_json(path / "run.json")
            if previous is not None:
                _check_same_run(path, previous, config_hash, components, ids)
            else:
                _clear(path)
            attempt = int(previous.get("attempts", 0)) + 1 if previous else 1
            run = {"format": RUN_FORMAT, "config_hash": config_hash, "components": components,
                   "n_obs": len(ids), "obs_ids": _obs_digest(ids), "attempts": attempt,
                   "created": (previous or {}).get("created", time.time()), "pid": os.getpid()}
            _write_json(path / "run.json", run)
        except BaseException:
            os.close(lock_fd)
            raise
        return cls(path, config_hash, ids, lock_fd, resuming=previous is not None, attempt=attempt,
                   announce=announce)

    # -- what an earlier attempt left ------------------------------------------------------------
    def plan_resume(self, plan: ReductionPlan) -> Resumed:
        """The blocks the checkpoints hold and their statuses (nothing when not resuming).

        Stray temporary files of a killed writer are removed first. Raises `RunDirError` when a
        checkpoint is refused or a held block has no status. Asked again for the same plan (the head
        start, then the reduction) it gives the same answer, announced once.
        """
        if not self.resuming or plan.n_reducers == 0:
            return Resumed()
        if self._last_resume is not None and self._last_resume[0] == plan:
            return self._last_resume[1]
        for tmp in self.checkpoint_dir.glob("*.tmp"):
            tmp.unlink(missing_ok=True)
        n_root_keys = len(plan.groups) or len(plan.blocks)
        resumed = Resumed(root=self._held("root", range(n_root_keys)))
        if plan.groups:
            held = [b for g in range(resumed.root) for b in plan.groups[g]]
            for g in range(resumed.root, len(plan.groups)):
                n = self._held(f"group{g:05d}", plan.groups[g])
                if n:
                    resumed.groups[g] = n
                    held.extend(plan.groups[g][:n])
        else:
            held = list(range(resumed.root))
        resumed.blocks = frozenset(held)
        journal = self._read_journal(plan)
        missing = sorted(resumed.blocks - journal.keys())
        if missing:
            raise RunDirError(f"run directory {self.path}: no status recorded for block {missing[0]} that its "
                              "checkpoints hold (inconsistent; rerun with --fresh to discard it)")
        resumed.statuses = {b: journal[b] for b in resumed.blocks}
        self.n_resumed = resumed.n_obs(plan)
        if self.announce:
            print(f"resuming: {self.n_resumed} of {sum(map(len, plan.blocks))} observations already reduced "
                  f"(run directory {self.path}, attempt {self.attempt})", file=sys.stderr, flush=True)
        log.debug("resuming %s: root holds %d keys, groups %s", self.path, resumed.root, resumed.groups)
        self._last_resume = (plan, resumed)
        return resumed

    def _held(self, tag: str, keys: Iterable[int]) -> int:
        """Keys the checkpoint ``tag`` holds (0 when absent, or for other keys: its reducer ignores it)."""
        path = self.checkpoint_dir / f"{tag}.pkl"
        keys = tuple(keys)
        try:
            header = read_checkpoint_header(path, self.config_hash)
        except FileNotFoundError:
            return 0
        except CheckpointRefused as err:
            raise RunDirError(f"{err} (rerun with --fresh to discard the run directory {self.path})") from None
        if (header.get("mode") != "merge" or header.get("n_keys") != len(keys)
                or header.get("keys") != keys_digest(keys)):
            return 0
        return max(0, min(int(header.get("n_acknowledged") or 0), len(keys)))

    def _read_journal(self, plan: ReductionPlan) -> dict[int, list[dict[str, Any]]]:
        out: dict[int, list[dict[str, Any]]] = {}
        try:
            lines = (self.path / "status.jsonl").read_bytes().splitlines()
        except FileNotFoundError:
            return out
        for line in lines:
            try:
                entry = json.loads(line)
                b = int(entry["block"])
                if 0 <= b < len(plan.blocks) and tuple(entry["obs"]) == plan.blocks[b]:
                    out[b] = list(entry["statuses"])
            except (ValueError, KeyError, TypeError):
                continue  # a line cut by a kill: its block was not sent, so no checkpoint holds it
        return out

    # -- this attempt ------------------------------------------------------------------------
    def record(self, block_index: int, block: tuple[int, ...], statuses: list[dict[str, Any]]) -> None:
        """Append a block's statuses to ``status.jsonl`` (call `sync` before sending its state)."""
        if self._journal is None:
            self._journal = open(self.path / "status.jsonl", "ab")
        plain = [{k: s.get(k) for k in _STATUS_KEYS} for s in statuses]
        line = json.dumps({"block": int(block_index), "obs": [int(o) for o in block], "statuses": plain},
                          default=_plain)
        self._journal.write(line.encode() + b"\n")

    def sync(self) -> None:
        """Make the recorded statuses durable (before the states they describe are sent)."""
        if self._journal is not None:
            self._journal.flush()
            os.fsync(self._journal.fileno())

    def close(self) -> None:
        """Release the directory and keep it (an interrupted run resumes from it)."""
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def finish(self) -> None:
        """The run is complete (its outputs written): remove the directory."""
        self.close()
        shutil.rmtree(self.path, ignore_errors=True)

    discard = finish  # a failure a rerun would repeat: nothing worth resuming


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return str(value)


def _lock(path: Path) -> int:
    fd = os.open(path / "lock", os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            owner = (_read_json(path / "run.json") or {}).get("pid", "?")
            raise RunDirError(f"run directory {path} is in use by another run (pid {owner}); wait for it to "
                              "end or use another output directory") from None
        raise
    return fd


def _read_json(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError:
        return None  # cut by a kill while being written: nothing was reduced under it yet
    return value if isinstance(value, dict) else None


def _write_json(path: Path, value: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(value, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _clear(path: Path) -> None:
    """Empty the run directory (keeping the lock file we hold)."""
    for child in path.iterdir():
        if child.name == "lock":
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def _check_same_run(path: Path, previous: dict, config_hash: str, components: dict[str, str],
                    ids: list[int]) -> None:
    if previous.get("format") != RUN_FORMAT:
        raise RunDirError(f"run directory {path} was written by another version (format "
                          f"{previous.get('format')!r}); rerun with --fresh to discard it")
    old = previous.get("components") or {}
    differs = [k for k in sorted(set(old) | set(components)) if old.get(k) != components.get(k)]
    if previous.get("obs_ids") != _obs_digest(ids):
        differs.append(f"observations ({previous.get('n_obs')} selected then, {len(ids)} now)")
    if previous.get("config_hash") != config_hash and not differs:
        differs.append("configuration")
    if differs:
        raise RunDirError(
            f"run directory {path} holds an unfinished run of another configuration (config hash "
            f"{str(previous.get('config_hash'))[:12]}, this run's {config_hash[:12]}; differs: {', '.join(differs)}); "
            "rerun with --fresh to discard it, or use another output directory")
