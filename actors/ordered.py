"""Order-fixed, idempotent, checkpointable reduction: the plain class (Ray-free; its actor is
`actors.reduction.ReductionActor`).

`OrderedReducer` consumes items keyed by a known, sorted list of keys and folds them into an
accumulator strictly in key order, buffering early arrivals. With ``mode="add"`` the keys are
observation ids and the items `Partial`s (``acc.add(partial)``); with ``mode="merge"`` the keys are
chunk indices and the items accumulator states (``acc.merge(from_state(item))``), which makes the
same class the leaves and the root of the reduction tree (see `actors.tree`). Because the fold
order depends only on the keys, the float64 result is bit-identical whatever the arrival order,
the number of workers or the retries.

Acknowledgement is always a *prefix* of the sorted keys (items are consumed in order), so replies
carry two integers: how many keys are acknowledged and how many of those are durable in the last
checkpoint. ``incarnation`` changes whenever the object is rebuilt (e.g. a Ray actor restart), which
lets the driver notice lost state and re-send what is not acknowledged.
"""
from __future__ import annotations

import logging
import os
import sys
import uuid
from pathlib import Path
from typing import Any, Hashable, Literal, NamedTuple, Sequence

from .checkpoints import FORMAT_VERSION, CheckpointRefused, keys_digest, read_checkpoint, write_checkpoint
from .protocols import Accumulator, AccumulatorFactory

__all__ = ["Reply", "OrderedReducer", "CHECKPOINT_VERSION", "CheckpointRefused"]

log = logging.getLogger(__name__)

CHECKPOINT_VERSION = FORMAT_VERSION  # see actors.checkpoints


class Reply(NamedTuple):
    """What every reducer call answers: enough for the caller to track acknowledged work."""

    incarnation: str
    n_acknowledged: int  # keys[:n_acknowledged] are folded in (added or skipped)
    n_durable: int  # keys[:n_durable] are in the last checkpoint (0 without checkpoints)


class OrderedReducer:
    """Fold items into an accumulator in the fixed order of ``keys``.

    Parameters
    ----------
    keys : sequence of hashable, sortable
        All keys this reducer is responsible for; sorted here, must be unique.
    make_accumulator : callable
        Zero-argument factory of an empty accumulator (see `actors.protocols.Accumulator`).
    mode : {"add", "merge"}
        ``"add"``: items are partials, folded with ``acc.add(item)`` (leaf of the tree).
        ``"merge"``: items are accumulator states, folded with ``acc.merge(from_state(item))``.
    checkpoint_path : str or Path, optional
        If given, the state and the acknowledged prefix are written there atomically every
        ``checkpoint_every`` acknowledgements, and restored from there on construction.
    checkpoint_every : int
        Acknowledgements between checkpoints.
    checkpoint_last : bool
        Also checkpoint when the last key is folded (a resumable run's record that everything is
        in); off when nobody reads the checkpoint after the run (it is on the result's critical path).
    config_hash : str, optional
        Content hash of the run configuration (``gamma_ray_dist.checkpoint_hash``); required with
        ``checkpoint_path``. Written into every checkpoint; a checkpoint written for another hash is
        refused, as is one that another user owns or could have written (`actors.checkpoints`).

    Raises
    ------
    CheckpointRefused
        The checkpoint at ``checkpoint_path`` is not trusted or not for ``config_hash``. Inside a Ray
        actor the constructor does not raise (an actor whose constructor fails is dead, and would be
        restarted or replaced into the same refusal): every later call raises the refusal instead.
    """

    def __init__(
        self,
        keys: Sequence[Hashable] = (),
        make_accumulator: AccumulatorFactory | None = None,
        *,
        mode: Literal["add", "merge"] = "add",
        checkpoint_path: str | os.PathLike | None = None,
        checkpoint_every: int = 8,
        config_hash: str | None = None,
        checkpoint_last: bool = True,
    ) -> None:
        try:
            self._configure(keys, make_accumulator, mode, checkpoint_path, checkpoint_every, config_hash,
                            checkpoint_last)
        except CheckpointRefused:
            if not _in_actor():
                raise
            # kept in self._refused: every call raises it

    def _configure(self, keys, make_accumulator, mode, checkpoint_path, checkpoint_every,
                   config_hash=None, checkpoint_last=True) -> None:
        self._refused: CheckpointRefused | None = None
        if mode not in ("add", "merge"):
            raise ValueError(f"mode must be 'add' or 'merge', got {mode!r}")
        self._keys = tuple(sorted(keys))
        self._pos = {k: i for i, k in enumerate(self._keys)}
        if len(self._pos) != len(self._keys):
            raise ValueError("keys must be unique")
        self._make = make_accumulator
        self._mode = mode
        self._path = None if checkpoint_path is None else Path(checkpoint_path)
        if self._path is not None and not config_hash:
            raise ValueError("checkpoint_path needs the run's config_hash (gamma_ray_dist.checkpoint_hash)")
        self._config_hash = config_hash
        self._every = max(1, int(checkpoint_every))
        self._checkpoint_last = bool(checkpoint_last)
        # No factory: a blank reducer (an idle pooled actor) that holds nothing until `reset`.
        self._acc: Accumulator | None = None if make_accumulator is None else make_accumulator()
        self._next = 0  # index in _keys of the next key to fold
        self._buffer: dict[Hashable, tuple[str, Any]] = {}  # early arrivals: key -> (kind, payload)
        self._skipped: dict[Hashable, str] = {}
        self._n_added = 0
        self._n_durable = 0
        self._since_checkpoint = 0
        self._incarnation = uuid.uuid4().hex
        if self._path is not None and os.path.lexists(self._path):
            try:
                self._restore()
            except CheckpointRefused as err:
                self._configure((), None, "add", None, 1)  # hold nothing from this run
                self._refused = err
                raise

    def reset(
        self,
        keys: Sequence[Hashable],
        make_accumulator: AccumulatorFactory,
        *,
        mode: Literal["add", "merge"] = "add",
        checkpoint_path: str | os.PathLike | None = None,
        checkpoint_every: int = 8,
        config_hash: str | None = None,
        checkpoint_last: bool = True,
    ) -> Reply:
        """Start over for new keys, as if freshly constructed (a new incarnation).

        Lets a warm actor process serve run after run: process start and imports (1-10 s on a
        loaded machine) are paid once, not per reducer per run. Restores from ``checkpoint_path``
        when it exists, as the constructor does; a refused checkpoint raises `CheckpointRefused` here
        and from every later call until the next `reset` or `clear`.
        """
        if make_accumulator is None:
            raise ValueError("reset needs an accumulator factory")
        self._configure(keys, make_accumulator, mode, checkpoint_path, checkpoint_every, config_hash,
                        checkpoint_last)
        return self._reply()

    def clear(self) -> bool:
        """Drop keys, buffered items and state (an idle pooled actor holds no memory)."""
        self._configure((), None, "add", None, 1)
        return True

    # -- calls -------------------------------------------------------------------------------
    def add(self, key: Hashable, item: Any) -> Reply:
        """Offer the item of ``key``; folded now if it is next in order, else buffered.

        Offering a key already acknowledged or buffered is a no-op (idempotent re-sends).
        """
        self._offer(key, "add", item)
        return self._reply()

    def skip(self, key: Hashable, reason: str = "") -> Reply:
        """Announce that ``key`` will never come (e.g. a failed observation) so order advances."""
        self._offer(key, "skip", str(reason))
        return self._reply()

    def acknowledged(self) -> Reply:
        """Current acknowledgement state (also a liveness probe)."""
        return self._reply()

    def acknowledged_keys(self) -> tuple:
        """The acknowledged keys, in order."""
        self._usable()
        return self._keys[: self._next]

    def progress(self) -> dict[str, int]:
        """Counts: total, acknowledged, added, skipped, buffered."""
        self._usable()
        return {
            "total": len(self._keys),
            "acknowledged": self._next,
            "added": self._n_added,
            "skipped": len(self._skipped),
            "buffered": len(self._buffer),
        }

    def skipped(self) -> dict[Hashable, str]:
        """Skipped keys and their reasons."""
        self._usable()
        return dict(self._skipped)

    def finalize(self) -> tuple[Reply, dict[str, Any] | None]:
        """``(reply, state)``; ``state`` is None while some key is not acknowledged yet."""
        complete = self._next == len(self._keys)
        return self._reply(), (self._acc.state() if complete else None)

    def checkpoint(self) -> Reply:
        """Write the checkpoint now (no-op without ``checkpoint_path``)."""
        if self._path is not None:
            self._write_checkpoint()
        return self._reply()

    # -- internals ---------------------------------------------------------------------------
    def _usable(self) -> None:
        if self._refused is not None:
            raise self._refused

    def _reply(self) -> Reply:
        self._usable()
        return Reply(self._incarnation, self._next, self._n_durable)

    def _offer(self, key: Hashable, kind: str, payload: Any) -> None:
        self._usable()
        try:
            pos = self._pos[key]
        except KeyError:
            raise KeyError(f"key {key!r} is not among the {len(self._keys)} keys of this reducer") from None
        if pos < self._next or key in self._buffer:
            return  # duplicate: counted once
        if kind == "add" and self._mode == "add":
            obs_id = getattr(payload, "obs_id", key)
            if obs_id != key:
                raise ValueError(f"partial for obs_id={obs_id!r} offered under key {key!r}")
        self._buffer[key] = (kind, payload)
        self._drain()

    def _drain(self) -> None:
        n_before = self._next
        while self._next < len(self._keys) and self._keys[self._next] in self._buffer:
            key = self._keys[self._next]
            kind, payload = self._buffer.pop(key)
            if kind == "skip":
                self._skipped[key] = payload
            elif self._mode == "add":
                self._acc.add(payload)
                self._n_added += 1
            else:
                self._acc.merge(type(self._acc).from_state(payload))
                self._n_added += 1
            self._next += 1
        self._since_checkpoint += self._next - n_before
        at_end = self._next == len(self._keys)
        if self._path is not None and self._since_checkpoint and (
            self._checkpoint_last if at_end else self._since_checkpoint >= self._every
        ):
            self._write_checkpoint()

    def _write_checkpoint(self) -> None:
        payload = {
            "mode": self._mode,
            "keys": self._keys,
            "n_acknowledged": self._next,
            "skipped": self._skipped,
            "state": self._acc.state(),
        }
        # The header says what is in the file, so a driver can plan a resumed run without unpickling it.
        header = {"mode": self._mode, "n_keys": len(self._keys), "keys": keys_digest(self._keys),
                  "n_acknowledged": self._next}
        write_checkpoint(self._path, self._config_hash, payload, header=header)
        self._n_durable = self._next
        self._since_checkpoint = 0

    def _restore(self) -> None:
        # Refused (CheckpointRefused, nothing unpickled) unless the file is ours, not writable by
        # others, and written for this configuration: see actors.checkpoints.
        _, payload = read_checkpoint(self._path, self._config_hash)
        if payload.get("mode") != self._mode or tuple(payload.get("keys", ())) != self._keys:
            log.warning("ignoring checkpoint %s: written for other keys or mode", self._path)
            return
        self._acc = type(self._acc).from_state(payload["state"])
        self._next = int(payload["n_acknowledged"])
        self._skipped = dict(payload["skipped"])
        self._n_added = self._next - len(self._skipped)
        self._n_durable = self._next
        log.info("restored %s: %d/%d keys acknowledged", self._path, self._next, len(self._keys))


def _in_actor() -> bool:
    """Whether this code runs inside a Ray actor process (the `ReductionActor`)."""
    ray = sys.modules.get("ray")  # an actor process has imported it; without it, not an actor
    if ray is None:
        return False
    try:
        return ray.is_initialized() and ray.get_runtime_context().get_actor_id() is not None
    except Exception:  # noqa: BLE001 - no runtime context: not an actor
        return False
