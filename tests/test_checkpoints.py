"""Reducer checkpoints: loaded only when this user wrote them for this configuration (issue 15).

Each refusal test starts from a checkpoint that loads, tampers with one thing (owner, group/other
write bit, symbolic link, configuration hash, format) and checks that the load is refused with the
reason in the message *and* that nothing was unpickled: the tampered files carry a pickle that
creates a marker directory when it is loaded, and the control test shows that it does.
"""
from __future__ import annotations

import dataclasses

import os
import pickle
import stat

import numpy as np
import pytest

from actors.checkpoints import CheckpointRefused, read_checkpoint, write_checkpoint
from actors.ordered import OrderedReducer

from .test_driver_fakes import fake_task, make_accumulator, make_partial, serial_sum

IDS = [23523, 23526, 23559, 23592, 47802, 47803]
HASH = "a" * 64
OTHER_HASH = "b" * 64


class _LoadMarker:
    """Unpickling it creates ``marker`` (a directory): proof that a file was loaded."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def _good_reducer_checkpoint(path) -> OrderedReducer:
    red = OrderedReducer(IDS, make_accumulator, checkpoint_path=path, checkpoint_every=1, config_hash=HASH)
    for o in IDS[:3]:
        red.add(o, make_partial(o))
    return red


def _restore(path, config_hash=HASH) -> OrderedReducer:
    return OrderedReducer(IDS, make_accumulator, checkpoint_path=path, config_hash=config_hash)


def _planted(tmp_path):
    """A checkpoint of this user for HASH whose pickle leaves a marker when loaded."""
    path, marker = tmp_path / "run" / "root.pkl", tmp_path / "loaded"
    write_checkpoint(path, HASH, {"evil": _LoadMarker(marker)})
    return path, marker


def _chown_to_someone_else(path, monkeypatch) -> None:
    if os.geteuid() == 0:
        os.chown(path, 4242, 4242)  # root may give the file away: a file another user wrote
    else:
        me = os.geteuid()  # cannot chown: be someone else instead
        monkeypatch.setattr(os, "geteuid", lambda: me + 4242)


# -- a good checkpoint loads ------------------------------------------------------------------
def test_good_checkpoint_restores_and_is_private(tmp_path):
    path = tmp_path / "ckpt" / "run-1" / "chunk00000.pkl"
    _good_reducer_checkpoint(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    again = _restore(path)
    assert again.acknowledged().n_acknowledged == again.acknowledged().n_durable == 3
    for o in IDS:
        again.add(o, make_partial(o))
    np.testing.assert_array_equal(again.finalize()[1]["values"], serial_sum(IDS))


def test_control_a_trusted_planted_pickle_is_loaded(tmp_path):
    # Without this, "the marker does not exist" below would prove nothing.
    path, marker = _planted(tmp_path)
    read_checkpoint(path, HASH)
    assert marker.is_dir()


# -- tampered checkpoints are refused, nothing unpickled ----------------------------------------
def test_checkpoint_of_another_user_is_refused(tmp_path, monkeypatch):
    path, marker = _planted(tmp_path)
    _chown_to_someone_else(path, monkeypatch)
    with pytest.raises(CheckpointRefused, match=r"root\.pkl refused: owned by uid \d+, not by the current user"):
        read_checkpoint(path, HASH)
    assert not marker.exists()


@pytest.mark.parametrize("bits, who", [(stat.S_IWGRP, "group"), (stat.S_IWOTH, "others"),
                                       (stat.S_IWGRP | stat.S_IWOTH, "group and others")])
def test_checkpoint_writable_by_others_is_refused(tmp_path, bits, who):
    path, marker = _planted(tmp_path)
    os.chmod(path, 0o600 | bits)
    with pytest.raises(CheckpointRefused, match=rf"refused: writable by {who} \(mode 06[0-9]{{2}}; must not be g\+w or o\+w\)"):
        read_checkpoint(path, HASH)
    assert not marker.exists()


def test_checkpoint_for_another_configuration_is_refused(tmp_path):
    path, marker = _planted(tmp_path)
    with pytest.raises(CheckpointRefused, match=r"refused: written for configuration a{16}\.\.\., this run's is b{16}"):
        read_checkpoint(path, OTHER_HASH)
    assert not marker.exists()


def test_symlinked_checkpoint_is_refused(tmp_path):
    path, marker = _planted(tmp_path)
    link = path.with_name("chunk00000.pkl")
    link.symlink_to(path)
    with pytest.raises(CheckpointRefused, match="chunk00000.pkl refused: is a symbolic link"):
        read_checkpoint(link, HASH)
    assert not marker.exists()


@pytest.mark.parametrize("content", [b"", b"\x80\x05not ours", b"gamma_ray_dist reducer checkpoint\n{bad json\n"])
def test_foreign_or_old_format_is_refused(tmp_path, content):
    path = tmp_path / "root.pkl"
    path.write_bytes(content)
    os.chmod(path, 0o600)
    with pytest.raises(CheckpointRefused, match="not a gamma_ray_dist checkpoint|unreadable header"):
        read_checkpoint(path, HASH)


def test_old_plain_pickle_checkpoint_is_refused(tmp_path):
    # The format before issue 15 was a bare pickle: never unpickled now.
    path, marker = tmp_path / "root.pkl", tmp_path / "loaded"
    path.write_bytes(pickle.dumps({"version": 1, "evil": _LoadMarker(marker)}))
    os.chmod(path, 0o600)
    with pytest.raises(CheckpointRefused, match="not a gamma_ray_dist checkpoint"):
        read_checkpoint(path, HASH)
    assert not marker.exists()


# -- through the reducer ----------------------------------------------------------------------
def test_reducer_refuses_tampered_checkpoints(tmp_path, monkeypatch):
    path = tmp_path / "ckpt" / "chunk00000.pkl"
    _good_reducer_checkpoint(path)
    assert _restore(path).acknowledged().n_acknowledged == 3  # untouched: loads

    with pytest.raises(CheckpointRefused, match="written for configuration"):
        _restore(path, OTHER_HASH)
    os.chmod(path, 0o660)
    with pytest.raises(CheckpointRefused, match="writable by group"):
        _restore(path)
    os.chmod(path, 0o600)
    assert _restore(path).acknowledged().n_acknowledged == 3  # repaired: loads again
    _chown_to_someone_else(path, monkeypatch)
    with pytest.raises(CheckpointRefused, match="not by the current user"):
        _restore(path)


def test_reducer_needs_a_config_hash_to_checkpoint(tmp_path):
    with pytest.raises(ValueError, match="config_hash"):
        OrderedReducer(IDS, make_accumulator, checkpoint_path=tmp_path / "c.pkl")
    blank = OrderedReducer()
    with pytest.raises(ValueError, match="config_hash"):
        blank.reset(IDS, make_accumulator, checkpoint_path=tmp_path / "c.pkl")


def test_refusal_keeps_failing_until_reset(tmp_path):
    # What a Ray actor does (its constructor must not fail): the refusal is raised by every call.
    path = tmp_path / "c.pkl"
    _good_reducer_checkpoint(path)
    red = OrderedReducer()
    with pytest.raises(CheckpointRefused):
        red.reset(IDS, make_accumulator, checkpoint_path=path, config_hash=OTHER_HASH)
    for call in (red.acknowledged, red.progress, red.finalize, lambda: red.add(IDS[0], make_partial(IDS[0]))):
        with pytest.raises(CheckpointRefused, match="written for configuration"):
            call()
    red.reset(IDS, make_accumulator)  # a new run without checkpoints: usable again
    assert red.acknowledged().n_acknowledged == 0


def test_refused_error_survives_pickling():
    err = pickle.loads(pickle.dumps(CheckpointRefused("/x/root.pkl", "is a symbolic link")))
    assert str(err) == "checkpoint /x/root.pkl refused: is a symbolic link" and err.path == "/x/root.pkl"


# -- the configuration hash -------------------------------------------------------------------
def test_run_config_hash_is_a_content_hash(hess_dr1):
    from gamma_ray_dist.distributed.config_hash import run_config_hash
    from gamma_ray_dist.pipeline.inputs import make_reduction_spec
    from gamma_ray_dist.pipeline.tasks import make_shared, reduce_task

    from .test_pipeline import CONFIG, AnalysisConfig

    config = AnalysisConfig.from_yaml(CONFIG.read_text().replace("$GAMMAPY_DATA/hess-dl3-dr1", str(hess_dr1)))

    def hash_of(spec, block_size=8, datastore=str(hess_dr1)):
        return run_config_hash(reduce_task, make_shared(datastore, spec), make_accumulator, block_size, 256)

    spec = make_reduction_spec(config)
    h = hash_of(spec)
    assert len(h) == 64 and int(h, 16) >= 0
    spec.content_key()  # a cached key must not change the hash
    assert hash_of(make_reduction_spec(config)) == hash_of(spec) == h  # rebuilt from the same config
    other = dataclasses.replace(make_reduction_spec(config), offset_max=2.0)
    assert hash_of(other) != h
    assert hash_of(spec, block_size=16) != h
    assert hash_of(spec, datastore="/elsewhere") != h
    assert run_config_hash(fake_task, make_shared(str(hess_dr1), spec), make_accumulator, 8, 256) != h


# -- end to end on Ray --------------------------------------------------------------------------
@pytest.mark.ray
@pytest.mark.parametrize("pool", [None, False], ids=["pooled-actors", "own-actors"])
def test_run_with_a_tampered_checkpoint_fails_with_the_refusal(ray_session, tmp_path, pool):
    from gamma_ray_dist.distributed import RayBackend

    run_id = f"tampered-{pool}"
    planted = tmp_path / "ckpt" / run_id / "root.pkl"
    write_checkpoint(planted, HASH, {"keys": (0, 1, 2)})  # this user's, but not this run's config
    with pytest.raises(CheckpointRefused, match=r"root\.pkl refused: written for configuration a{16}"):
        with RayBackend(reuse_reducers=pool is None, block_size=4, max_in_flight=2, progress=False,
                        checkpoint_dir=str(tmp_path / "ckpt")) as backend:
            backend.reduce(list(range(12)), fake_task, {}, make_accumulator, run_id=run_id)
    assert planted.exists()  # kept, for the user to look at
