"""Content-interned pickling for objects that every Ray task deserialises again.

A stacked geometry or a reduction spec travels with every task and every accumulator state. Its
pickle is small (~15 kB) but rebuilding it is not: astropy parses the WCS headers of each `WcsGeom`
again (1.5-6 ms per object, i.e. a quarter of the reduction time of one observation). Objects that
opt in pickle as ``(blob, ...)`` and are rebuilt through `load_interned`, which keeps the last
objects it rebuilt keyed by a digest of their pickled content: a process deserialising the same
content again gets the object it already has (treated as immutable) for the cost of one hash.
"""
from __future__ import annotations

import hashlib
import pickle
import threading
from collections import OrderedDict
from typing import Any

__all__ = ["dumps_once", "load_interned", "CACHE_SIZE"]

#: Distinct contents kept per process (a run uses one or two: its spec and its geometry).
CACHE_SIZE = 32

_cache: OrderedDict[bytes, Any] = OrderedDict()
_lock = threading.Lock()


def dumps_once(owner: Any, value: Any, attribute: str = "_interned_blob") -> bytes:
    """Pickle ``value`` once and keep the bytes on ``owner`` (which must not change afterwards)."""
    blob = owner.__dict__.get(attribute)
    if blob is None:
        blob = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        owner.__dict__[attribute] = blob
    return blob


def load_interned(blob: bytes) -> Any:
    """``pickle.loads(blob)``, or the object already loaded from identical bytes in this process.

    The returned object is shared: callers must not mutate it.
    """
    key = hashlib.blake2b(blob, digest_size=20).digest()
    with _lock:
        value = _cache.get(key)
        if value is not None:
            _cache.move_to_end(key)
            return value
    value = pickle.loads(blob)  # bytes this package pickled itself (Ray payload, checkpoint)
    with _lock:
        _cache[key] = value
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return value
