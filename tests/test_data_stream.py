"""orchestrator.data.stream: PromptStream's seeded epochs, exact resume and custom orders."""

from __future__ import annotations

import dataclasses
import json

import pytest
from forkrl.orchestrator.data import ArithmeticData, PromptStream, generate_arithmetic


def _rows(n):
    cfg = ArithmeticData(num_train=n, num_eval=0)
    return generate_arithmetic(cfg, "train", n)


def test_stream_epochs_are_permutations_and_seeded():
    rows = _rows(10)
    s = PromptStream(rows, batch_size=4, seed=1)
    seen = [r.uid for _ in range(5) for r in s.next_batch()]  # 20 = two full epochs
    assert sorted(seen[:10]) == sorted(r.uid for r in rows) == sorted(seen[10:])
    assert seen[:10] != seen[10:]  # each epoch reshuffled
    assert s.epoch == 1 and s.position == 10
    s2 = PromptStream(rows, batch_size=4, seed=1)
    assert [r.uid for _ in range(5) for r in s2.next_batch()] == seen
    s3 = PromptStream(rows, batch_size=4, seed=2)
    assert [r.uid for _ in range(5) for r in s3.next_batch()] != seen


def test_stream_resume_is_exact():
    rows = _rows(13)
    ref = PromptStream(rows, batch_size=5, seed=3)
    ref_uids = [[r.uid for r in ref.next_batch()] for _ in range(12)]
    s = PromptStream(rows, batch_size=5, seed=3)
    for _ in range(7):
        s.next_batch()
    state = json.loads(json.dumps(s.state_dict()))  # survives a JSON checkpoint
    resumed = PromptStream(rows, batch_size=5, seed=3)
    resumed.load_state_dict(state)
    assert [[r.uid for r in resumed.next_batch()] for _ in range(5)] == ref_uids[7:]
    with pytest.raises(ValueError, match="data changed"):
        PromptStream(rows[:-1], batch_size=5, seed=3).load_state_dict(state)
    swapped = rows[:4] + [dataclasses.replace(rows[4], answer="999")] + rows[5:]  # same count, other rows
    with pytest.raises(ValueError, match="different rows .*data changed"):
        PromptStream(swapped, batch_size=5, seed=3).load_state_dict(state)


def test_stream_set_order():
    rows = _rows(6)
    s = PromptStream(rows, batch_size=4, seed=0)
    s.next_batch()
    order = ["arith-train-5", "arith-train-0", "arith-train-3"]
    s.set_order(order)
    assert s.epoch == 1 and s.position == 0  # a new order starts a new pass
    assert [r.uid for r in s.next_batch()] == order + ["arith-train-5"]  # wraps: the order repeats
    state = s.state_dict()
    assert state["order"] == order
    r = PromptStream(rows, batch_size=4, seed=0)
    r.load_state_dict(state)
    assert [x.uid for x in r.next_batch()] == [x.uid for x in s.next_batch()]
    s.set_order(None)
    assert sorted(x.uid for x in s.next_batch() + s.next_batch()[:2]) == sorted(x.uid for x in rows)
    with pytest.raises(ValueError, match="unknown"):
        s.set_order(["nope"])
    with pytest.raises(ValueError, match="duplicate"):
        s.set_order(["arith-train-1", "arith-train-1"])
