"""Reducer checkpoint files: written private, loaded back only when they can be trusted (no Ray here).

A checkpoint holds a pickle, and unpickling runs code chosen by whoever wrote the file. Checkpoints
live in the run directory (``checkpoint_dir/run_id``), which may sit on storage that other users or
machines can write (NFS, EFS, a shared PVC). So before anything is unpickled, `read_checkpoint`
refuses, with a `CheckpointRefused` naming the file and the reason, a file that

* is not a regular file (a symbolic link, a FIFO...),
* is not owned by the user running this process (``os.geteuid()``),
* is writable by its group or by others (mode ``g+w`` / ``o+w``),
* does not start with this module's format line, or has an unreadable header,
* was written by another checkpoint format version,
* was written for another run configuration: the header records the SHA-256 content hash of the
  configuration the writer ran with (see ``gamma_ray_dist.checkpoint_hash``) and it must equal the
  reader's.

The owner and mode are those of the *open* file descriptor (``os.fstat``), so the checked file is the
one that is read. The hash is not a signature (anyone able to write the file could copy a valid
header): it stops a checkpoint of another configuration, or a stale one, from being folded into this
run; ownership and mode are what keep other users' bytes out of `pickle.load`.

`write_checkpoint` creates missing directories with mode 0700 and the file with mode 0600 (through
`tempfile.mkstemp`), then renames it over the target (atomic: a crash leaves the old or the new file).

File layout: the line ``MAGIC``, one line of JSON (``{"version", "config_hash", ...}``; a reducer adds
``mode``, ``n_keys``, ``keys`` (`keys_digest`) and ``n_acknowledged``, which `read_checkpoint_header`
returns without unpickling), the pickle.
"""
from __future__ import annotations

import errno
import json
import os
import pickle
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

__all__ = ["CheckpointRefused", "MAGIC", "FORMAT_VERSION", "check_trusted", "read_checkpoint",
           "read_checkpoint_header", "write_checkpoint", "keys_digest"]

#: First line of every checkpoint file.
MAGIC = b"gamma_ray_dist reducer checkpoint\n"

#: Version of the layout (and of the header keys); another version is refused, never guessed at.
FORMAT_VERSION = 2

_MAX_HEADER = 1 << 16  # bytes: the header is a few hundred


class CheckpointRefused(RuntimeError):
    """A checkpoint file is not loaded: it is not trusted, or not for this run configuration.

    Defined here rather than in ``gamma_ray_dist.errors`` because `actors` must not import the
    science package (``gamma_ray_dist.errors`` is not a dependency of the actors layer).
    """

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"checkpoint {self.path} refused: {reason}")

    def __reduce__(self):  # keeps path and reason when it crosses a process boundary (Ray)
        return (type(self), (self.path, self.reason))


def keys_digest(keys) -> str:
    """Short digest of a reducer's sorted keys, written into its checkpoint header (a reader can tell
    which keys a checkpoint is for without unpickling it)."""
    import hashlib
    import numbers

    canon = [int(k) if isinstance(k, numbers.Integral) else repr(k) for k in keys]
    return hashlib.sha256(json.dumps(canon).encode()).hexdigest()[:32]


def check_trusted(st: os.stat_result, path: str | os.PathLike) -> None:
    """Raise `CheckpointRefused` unless ``st`` is a regular file of this user, not group/other-writable."""
    if not stat.S_ISREG(st.st_mode):
        raise CheckpointRefused(path, "not a regular file")
    uid = os.geteuid()
    if st.st_uid != uid:
        raise CheckpointRefused(path, f"owned by uid {st.st_uid}, not by the current user (uid {uid})")
    writable = [who for who, bit in (("group", stat.S_IWGRP), ("others", stat.S_IWOTH)) if st.st_mode & bit]
    if writable:
        raise CheckpointRefused(
            path, f"writable by {' and '.join(writable)} (mode {stat.S_IMODE(st.st_mode):04o}; must not be g+w or o+w)")


def read_checkpoint(path: str | os.PathLike, config_hash: str) -> tuple[dict[str, Any], Any]:
    """``(header, payload)`` of the checkpoint at ``path`` written for ``config_hash``.

    Raises `CheckpointRefused` (before unpickling anything) for an untrusted file, another format or
    another configuration; `FileNotFoundError` when there is no file.
    """
    with _open_checked(path, config_hash) as (f, header):
        payload = pickle.load(f)  # trusted: our user's file, not writable by others, our configuration
    return header, payload


def read_checkpoint_header(path: str | os.PathLike, config_hash: str) -> dict[str, Any]:
    """The JSON header of the checkpoint at ``path``, with every check of `read_checkpoint`, unpickling
    nothing (a driver learns from it what a reducer will restore, e.g. ``n_acknowledged``)."""
    with _open_checked(path, config_hash) as (_, header):
        return header


@contextmanager
def _open_checked(path: str | os.PathLike, config_hash: str) -> Iterator[tuple[Any, dict[str, Any]]]:
    """The open file positioned at the pickle, and its header, once every check has passed."""
    if not config_hash:
        raise ValueError("reading a checkpoint needs the run's config_hash")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise CheckpointRefused(path, "is a symbolic link") from None
        raise
    with os.fdopen(fd, "rb") as f:
        check_trusted(os.fstat(f.fileno()), path)
        if f.readline(len(MAGIC)) != MAGIC:
            raise CheckpointRefused(path, "not a gamma_ray_dist checkpoint (unknown format or an older version)")
        line = f.readline(_MAX_HEADER)
        try:
            header = json.loads(line)
        except ValueError:
            header = None
        if not isinstance(header, dict) or not line.endswith(b"\n"):
            raise CheckpointRefused(path, "unreadable header")
        if header.get("version") != FORMAT_VERSION:
            raise CheckpointRefused(
                path, f"format version {header.get('version')!r}, this program reads version {FORMAT_VERSION}")
        written_for = header.get("config_hash")
        if written_for != config_hash:
            raise CheckpointRefused(
                path, f"written for configuration {str(written_for)[:16]}..., this run's is {config_hash[:16]}... "
                      "(delete the file or use another run_id)")
        yield f, header


def write_checkpoint(path: str | os.PathLike, config_hash: str, payload: Any,
                     header: Mapping[str, Any] | None = None) -> None:
    """Atomically write ``payload`` (pickled) to ``path`` for ``config_hash``, readable by this user only."""
    if not config_hash:
        raise ValueError("writing a checkpoint needs the run's config_hash")
    path = Path(path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    head = dict(header or {})
    head.update(version=FORMAT_VERSION, config_hash=str(config_hash))
    # Write beside the target then rename: a crash leaves either the old or the new file.
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(MAGIC)
            f.write(json.dumps(head, sort_keys=True).encode() + b"\n")
            pickle.dump(payload, f, protocol=pickle.HIGHEST_PROTOCOL)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
