"""OrderedReducer, the reduction tree plan and the progress display, without Ray."""
from __future__ import annotations

import io
import itertools
import random

import numpy as np
import pytest

from actors.ordered import OrderedReducer
from actors.tree import chunk_index, plan_chunks
from gamma_ray_dist.distributed.progress import Progress

from .test_driver_fakes import FakeAccumulator, make_accumulator, make_partial, serial_sum

IDS = [23523, 23526, 23559, 23592, 47802, 47803, 47804, 47827]
HASH = "c0ffee" * 10 + "abcd"  # a run configuration hash (64 hex digits)


def _fold(order, keys=IDS, **kw):
    red = OrderedReducer(keys, make_accumulator, **kw)
    for o in order:
        red.add(o, make_partial(o))
    return red


def test_fake_sum_is_order_sensitive():
    # Guard: the fakes must make a wrong summation order visible, else the tests below prove nothing.
    assert not np.array_equal(serial_sum(IDS), serial_sum(IDS[::-1]))


def test_any_arrival_order_gives_the_sorted_order_bits():
    expected = serial_sum(sorted(IDS))
    rng = random.Random(0)
    for _ in range(10):
        order = IDS[:]
        rng.shuffle(order)
        reply, state = _fold(order).finalize()
        assert reply.n_acknowledged == len(IDS)
        np.testing.assert_array_equal(state["values"], expected)
        assert list(state["obs_ids"]) == sorted(IDS)


def test_buffers_until_the_gap_is_filled_and_acknowledges_a_prefix():
    red = OrderedReducer(IDS, make_accumulator)
    assert red.add(IDS[2], make_partial(IDS[2])).n_acknowledged == 0
    assert red.add(IDS[1], make_partial(IDS[1])).n_acknowledged == 0
    assert red.progress() == {"total": 8, "acknowledged": 0, "added": 0, "skipped": 0, "buffered": 2}
    assert red.add(IDS[0], make_partial(IDS[0])).n_acknowledged == 3
    assert red.acknowledged_keys() == tuple(IDS[:3])
    assert red.finalize()[1] is None  # incomplete: no state


def test_duplicate_add_counts_once():
    red = OrderedReducer(IDS[:3], make_accumulator)
    for o in [IDS[1], IDS[1], IDS[0], IDS[0], IDS[1], IDS[2], IDS[2]]:
        red.add(o, make_partial(o))
    _, state = red.finalize()
    np.testing.assert_array_equal(state["values"], serial_sum(IDS[:3]))
    assert red.progress()["added"] == 3


def test_skip_lets_the_order_advance():
    red = OrderedReducer(IDS[:3], make_accumulator)
    red.add(IDS[2], make_partial(IDS[2]))
    red.skip(IDS[1], "IRFError: no aeff")
    assert red.acknowledged().n_acknowledged == 0
    red.add(IDS[0], make_partial(IDS[0]))
    _, state = red.finalize()
    assert list(state["obs_ids"]) == [IDS[0], IDS[2]]
    assert red.skipped() == {IDS[1]: "IRFError: no aeff"}


def test_wrong_key_or_mismatched_partial_is_rejected():
    red = OrderedReducer(IDS[:2], make_accumulator)
    with pytest.raises(KeyError, match="not among"):
        red.add(1, make_partial(1))
    with pytest.raises(ValueError, match="obs_id=23523"):
        red.add(IDS[1], make_partial(IDS[0]))


def test_merge_mode_folds_states_in_chunk_order():
    chunks = plan_chunks(IDS, 3)
    states = [_fold(c, keys=c).finalize()[1] for c in chunks]
    root = OrderedReducer(range(len(chunks)), make_accumulator, mode="merge")
    for i in [2, 0, 1]:
        root.add(i, states[i])
    _, state = root.finalize()
    expected = FakeAccumulator()
    for s in states:
        expected.merge(FakeAccumulator.from_state(s))
    np.testing.assert_array_equal(state["values"], expected.values)
    assert list(state["obs_ids"]) == sorted(IDS)


def test_checkpoint_is_atomic_and_restores_on_a_new_incarnation(tmp_path):
    path = tmp_path / "ckpt" / "chunk00000.pkl"
    red = OrderedReducer(IDS, make_accumulator, checkpoint_path=path, checkpoint_every=2,
                         config_hash=HASH)
    for o in IDS[:3]:
        reply = red.add(o, make_partial(o))
    red.skip(IDS[3], "bad")
    assert (reply.n_acknowledged, reply.n_durable) == (3, 2)
    assert red.acknowledged().n_durable == 4
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left behind

    again = OrderedReducer(IDS, make_accumulator, checkpoint_path=path, checkpoint_every=2,
                           config_hash=HASH)
    reply = again.acknowledged()
    assert reply.incarnation != red.acknowledged().incarnation
    assert reply.n_acknowledged == reply.n_durable == 4
    assert again.skipped() == {IDS[3]: "bad"}
    for o in IDS:  # a driver re-sends everything; acknowledged ones are ignored
        again.add(o, make_partial(o))
    _, state = again.finalize()
    expected = serial_sum([o for o in IDS if o != IDS[3]])
    np.testing.assert_array_equal(state["values"], expected)


@pytest.mark.parametrize("last", [True, False])
def test_the_last_checkpoint_is_written_only_when_asked(tmp_path, last):
    """A run whose checkpoints nobody reads afterwards skips the one after the last key (it would
    delay the result); the periodic ones are written either way."""
    path = tmp_path / "root.pkl"
    red = OrderedReducer(IDS[:5], make_accumulator, checkpoint_path=path, checkpoint_every=2, config_hash=HASH,
                         checkpoint_last=last)
    replies = [red.add(o, make_partial(o)) for o in IDS[:5]]
    assert [r.n_durable for r in replies] == [0, 2, 2, 4, 5 if last else 4]
    _, state = red.finalize()
    np.testing.assert_array_equal(state["values"], serial_sum(IDS[:5]))


def test_checkpoint_for_other_keys_is_ignored(tmp_path):
    path = tmp_path / "c.pkl"
    _fold(IDS[:2], keys=IDS[:2], checkpoint_path=path, checkpoint_every=1, config_hash=HASH)
    fresh = OrderedReducer(IDS, make_accumulator, checkpoint_path=path, config_hash=HASH)
    assert fresh.acknowledged().n_acknowledged == 0


def test_plan_chunks_depends_only_on_ids_and_fan_in():
    chunks = plan_chunks(IDS[::-1] + IDS[:2], 3)
    assert chunks == [tuple(IDS[0:3]), tuple(IDS[3:6]), tuple(IDS[6:8])]
    assert chunk_index(chunks)[IDS[4]] == 1
    assert plan_chunks([], 4) == []
    with pytest.raises(ValueError):
        plan_chunks(IDS, 0)


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_lines_off_tty_and_bar_on_tty():
    plain = io.StringIO()
    bar = Progress(20, plain, log_every=1e9)
    for i in range(1, 21):
        bar.update(i, failed=i // 10)
    bar.close()
    lines = plain.getvalue().splitlines()
    assert "\r" not in plain.getvalue()
    assert 10 <= len(lines) <= 12  # one per 10 % step (+ the first), not one per item
    assert lines[-1].startswith("reduce: 20/20 observations, 2 failed")

    tty = _Tty()
    bar = Progress(5, tty)
    for i in itertools.chain(range(1, 6)):
        bar.update(i)
    bar.close()
    out = tty.getvalue()
    assert out.startswith("\r") and out.endswith("\n") and "5/5" in out and "[####" in out


def test_merge_mode_restores_its_checkpoint_without_the_durable_states(tmp_path):
    # The driver drops chunk states once the root reports them durable: a restored root must
    # finish from the states after the durable prefix only, with the same bits.
    chunks = plan_chunks(IDS, 2)
    states = [_fold(c, keys=c).finalize()[1] for c in chunks]
    path = tmp_path / "root.pkl"
    root = OrderedReducer(range(len(chunks)), make_accumulator, mode="merge", checkpoint_path=path,
                          checkpoint_every=2, config_hash=HASH)
    for i in [1, 0, 2]:
        reply = root.add(i, states[i])
    assert (reply.n_acknowledged, reply.n_durable) == (3, 2)
    again = OrderedReducer(range(len(chunks)), make_accumulator, mode="merge", checkpoint_path=path,
                           checkpoint_every=2, config_hash=HASH)
    reply = again.acknowledged()
    assert reply.n_acknowledged == reply.n_durable == 2
    for i in range(reply.n_durable, len(chunks)):
        again.add(i, states[i])
    _, state = again.finalize()
    expected = OrderedReducer(range(len(chunks)), make_accumulator, mode="merge")
    for i, s in enumerate(states):
        expected.add(i, s)
    np.testing.assert_array_equal(state["values"], expected.finalize()[1]["values"])
    assert state["values"].tobytes() == expected.finalize()[1]["values"].tobytes()
    assert list(state["obs_ids"]) == sorted(IDS)
    assert path.exists() and [p.name for p in tmp_path.iterdir()] == [path.name]
