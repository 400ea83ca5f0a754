"""Driver-side handles on the reduction actors.

`ReducerLink` tracks what was sent to one reducer actor and what it acknowledged, and recovers from
restarts by re-sending; `ReducerPool` keeps warm reducer processes that successive runs of one backend
reuse. Used by `gamma_ray_dist.distributed.driver`.
"""
from __future__ import annotations

import logging
import os
import uuid
from collections import deque
from typing import Any, Hashable, Iterable

import ray
from ray.exceptions import RayActorError

from actors.reduction import ReductionActor, Reply
from actors.refs import Failed

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# Driver-side view of one reducer actor
# ---------------------------------------------------------------------------------------------


class ReducerLink:
    """Tracks what was sent to one reducer actor and what it acknowledged; recovers restarts.

    Replies of one actor are handled in call order (a FIFO), so incarnations are seen in the order
    they happened: a reply with a new incarnation means the state was rebuilt (empty or from the
    checkpoint) and everything sent beyond its acknowledged prefix is re-sent.
    """

    def __init__(self, tag: str, keys: Iterable[Hashable], spawn, release=None) -> None:
        self.tag = tag
        self.keys = tuple(sorted(keys))
        self._spawn = spawn  # (tag, generation) -> actor handle
        # (handle, healthy) -> None: give the actor back (to the pool) or kill it
        self._release = release or (lambda handle, healthy: ray.kill(handle, no_restart=True))
        self.generation = 0
        self.handle = spawn(tag, 0)
        # key -> ("add", ref) | ("skip", reason) | ("released", None)
        self.sent: dict[Hashable, tuple[str, Any]] = {}
        self.calls: deque[tuple[str, ray.ObjectRef, ray.ObjectRef | None]] = deque()
        self.incarnation: str | None = None
        self.n_acked = 0
        self.n_durable = 0
        self.suspect = False
        self.failed_pings = 0
        self.finalizing = False
        self.state_ref: ray.ObjectRef | None = None
        self.restarts = 0
        self.refs_held = 0  # entries of `sent` that hold an ObjectRef (not released)
        self._released_upto = 0  # keys[:_released_upto] have been released

    # -- sending -------------------------------------------------------------------------------
    def send(self, key: Hashable, ref: ray.ObjectRef) -> None:
        """Send the item of ``key`` (an ObjectRef the actor resolves)."""
        if self._hold(key, ("add", ref)):
            self._call(key)

    def _hold(self, key: Hashable, entry: tuple[str, Any]) -> bool:
        """Record what ``key`` was sent as; False if it is already durable (nothing to send)."""
        previous = self.sent.get(key, ("",))[0]
        if previous == "released":
            return False
        if previous == "add":
            self.refs_held -= 1
        self.sent[key] = entry
        self.refs_held += 1
        return True

    def adopt(self, n_held: int) -> None:
        """``keys[:n_held]`` are in the checkpoint the actor restores (an earlier attempt of the run made
        them durable): nothing is sent for them; a ping learns the actor's acknowledged prefix."""
        for key in self.keys[:n_held]:
            self.sent[key] = ("released", None)
        self._released_upto = max(self._released_upto, int(n_held))
        self._ping()

    def skip(self, key: Hashable, reason: str) -> None:
        self.sent[key] = ("skip", reason)
        self._call(key)

    def _call(self, key: Hashable) -> None:
        kind, payload = self.sent[key]
        call = (self.handle.add if kind == "add" else self.handle.skip).remote(key, payload)
        self.calls.append(("reply", call, None))

    def _ping(self) -> None:
        if not any(kind == "ping" for kind, _, _ in self.calls):
            self.calls.append(("ping", self.handle.acknowledged.remote(), None))

    def maybe_finalize(self) -> None:
        # Asked as soon as every key is sent, not once every one is acknowledged: calls of one caller
        # run in order, so the reply comes right after the last merge (one round trip less on the
        # path to the result); a reply that is not complete (a restart lost keys) leaves state_ref
        # unset, and the next upkeep asks again after the re-sent keys.
        if (
            self.state_ref is None
            and not self.finalizing
            and not self.suspect
            and len(self.sent) == len(self.keys)
        ):
            meta, state = self.handle.finalize.options(num_returns=2).remote()
            self.calls.append(("finalize", meta, state))
            self.finalizing = True

    # -- receiving -----------------------------------------------------------------------------
    def pop_ready(self, ready: set) -> list[tuple[str, ray.ObjectRef, ray.ObjectRef | None]]:
        out = []
        while self.calls and self.calls[0][1] in ready:
            out.append(self.calls.popleft())
        return out

    def on_result(self, call: tuple[str, ray.ObjectRef, ray.ObjectRef | None], value: Any) -> None:
        kind, _, state_ref = call
        if kind == "finalize":
            self.finalizing = False
        if isinstance(value, Failed):
            if not isinstance(value.error, RayActorError):
                raise value.error  # a bug in the accumulator, not a lost actor
            self.suspect = True
            if kind == "ping":
                self.failed_pings += 1
                if self.failed_pings >= 2:
                    self._replace()
            self._ping()
            return
        self._observe(value)
        if kind == "finalize" and value.incarnation == self.incarnation and value.n_acknowledged == len(self.keys):
            self.state_ref = state_ref

    def _observe(self, reply: Reply) -> None:
        if reply.incarnation != self.incarnation:
            rebuilt = self.incarnation is not None or self.suspect
            self.incarnation = reply.incarnation
            self.n_acked, self.n_durable = reply.n_acknowledged, reply.n_durable
            if self.n_acked < self._released_upto:  # a checkpoint vanished or was replaced under the run
                raise RuntimeError(f"reducer {self.tag} restored {self.n_acked} of the {self._released_upto} keys "
                                   "its checkpoint held")
            self.suspect, self.failed_pings = False, 0
            if rebuilt:
                self.restarts += 1
                log.warning("reducer %s restarted: %d/%d acknowledged, re-sending the rest",
                            self.tag, self.n_acked, len(self.keys))
                for key in self.keys[self.n_acked:]:
                    if key in self.sent:
                        if self.sent[key][0] == "released":
                            raise RuntimeError(f"reducer {self.tag} lost {key!r}: checkpoint older than acknowledged")
                        self._call(key)
        else:
            self.n_acked = max(self.n_acked, reply.n_acknowledged)
            self.n_durable = max(self.n_durable, reply.n_durable)
        # What a checkpoint holds will be restored on restart: drop our refs to free the store.
        while self._released_upto < min(self.n_durable, len(self.keys)):
            key = self.keys[self._released_upto]
            if key in self.sent and self.sent[key][0] != "released":
                if self.sent[key][0] == "add":
                    self.refs_held -= 1
                self.sent[key] = ("released", None)
            self._released_upto += 1

    def _replace(self) -> None:
        """The actor is gone for good (restarts exhausted): start a fresh one."""
        log.warning("reducer %s is dead; replacing it", self.tag)
        try:
            self._release(self.handle, False)
        except Exception:  # noqa: BLE001
            pass
        self.generation += 1
        self.handle = self._spawn(self.tag, self.generation)
        self.failed_pings = 0

    def close(self) -> None:
        healthy = not self.suspect
        self.sent.clear()
        self.calls.clear()
        self.refs_held = 0
        self._release(self.handle, healthy)


# ---------------------------------------------------------------------------------------------
# Warm reducer actors, kept by this driver process across runs
# ---------------------------------------------------------------------------------------------
#: Idle reducer actors kept warm between runs. An idle actor holds no CPU (``num_cpus=0``) and no
#: state (cleared on release): just a Python process with the package imported.
DEFAULT_REDUCER_POOL_SIZE = 4


class ReducerPool:
    """Reducer actor processes that successive runs of this driver process reuse.

    Starting an actor process costs 1-2 s on an idle 2-core machine and 5-12 s on a loaded one
    (mostly imports), which dwarfs reducing a few dozen observations. A run *leases* actors
    (``reset`` configures one for a group of blocks or the root, a new incarnation), and gives them back
    when its reducer is done (``clear`` drops the state); at most ``max_size`` idle actors are
    kept, the rest are killed. `prestart` starts the actors a run is about to need all at once, in
    parallel with its first tasks.

    Pooled actors are never restarted by Ray (a restart would re-run the blank constructor): the
    driver replaces a lost one by a leased or new actor, which is equivalent (new incarnation, state
    rebuilt from the checkpoint or by re-sending). They are pinned to the driver's node (where a
    root's run-local checkpoint directory lives), are not detached (they die with the driver) and
    are killed when the backend that owns the pool closes.
    """

    def __init__(self, max_size: int = DEFAULT_REDUCER_POOL_SIZE) -> None:
        self.max_size = int(max_size)
        self._idle: list[tuple[Any, str]] = []  # (handle, actor name)
        self._names: dict[int, str] = {}  # id(handle) -> name, for leased actors (handles held by runs)
        self._session: Any = None
        self.created = 0
        self.reused = 0

    def _sync(self) -> None:
        """Forget handles of a previous Ray session (``ray.shutdown()`` then ``ray.init()``)."""
        session = (ray.get_runtime_context().get_job_id(), ray.get_runtime_context().get_node_id())
        if session != self._session:
            self._idle.clear()
            self._names.clear()
            self._session = session

    def _create(self) -> tuple[Any, str]:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        name = f"grd-reducer-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        handle = ReductionActor.options(
            name=name,
            max_restarts=0,  # the driver replaces a lost actor (see the class docstring)
            max_task_retries=0,  # the driver re-sends; Ray must not replay calls on its own
            scheduling_strategy=NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(),
                                                               soft=False),
        ).remote()
        self.created += 1
        return handle, name

    @property
    def n_idle(self) -> int:
        return len(self._idle)

    @property
    def idle_names(self) -> list[str]:
        """Names of the idle actors, in the order `lease` hands them out."""
        return [name for _, name in self._idle]

    def prestart(self, n: int) -> None:
        """Make sure ``n`` idle actors exist (starting the missing ones now, without waiting)."""
        self._sync()
        while len(self._idle) < n:
            self._idle.append(self._create())

    def lease(self) -> tuple[Any, str]:
        """An actor for one reducer: a warm idle one, else a new one. Configure it with ``reset``."""
        self._sync()
        if self._idle:
            handle, name = self._idle.pop(0)
            self.reused += 1
        else:
            handle, name = self._create()
        self._names[id(handle)] = name
        return handle, name

    def give_back(self, handle: Any, healthy: bool) -> None:
        """Return a leased actor: kept (state cleared) if healthy and the pool has room, else killed."""
        name = self._names.pop(id(handle), None)
        if healthy and name is not None and len(self._idle) < self.max_size:
            handle.clear.remote()  # ordered after the run's calls: the state is dropped after them
            self._idle.append((handle, name))
            return
        try:
            ray.kill(handle, no_restart=True)
        except Exception:  # noqa: BLE001
            pass

    def shutdown(self) -> None:
        """Kill the idle actors (leased ones are killed or returned by their runs)."""
        idle, self._idle = self._idle, []
        if not ray.is_initialized():
            return
        for handle, _ in idle:
            try:
                ray.kill(handle, no_restart=True)
            except Exception:  # noqa: BLE001
                pass



