"""common.transport_collective, the broadcast group: both ends in one process (a gloo group of two
threads) with their timeouts, and the sender's failure path against a receiver whose process died."""
import subprocess
import sys
import textwrap
import threading
import time

import pytest
import torch

from forkrl.common import weights
from forkrl.common.transport import WeightSendFailed
from forkrl.common.transport_collective import Collective, CollectiveReceiver, CollectiveSender
from forkrl.learner.engine_setup import free_port

PLAN = [[("a", "float32", (2, 3)), ("b", "float32", (4,))], [("c", "bfloat16", (3,))]]


def _join_receiver(port: int, timeout_s: float) -> dict:
    """Receiver rank 1 joined on a thread (its rendezvous blocks until rank 0 exists)."""
    box: dict = {}
    thread = threading.Thread(target=lambda: box.setdefault(
        "rx", CollectiveReceiver("127.0.0.1", port, 1, 2, "gloo", timeout_s)))
    thread.start()
    box["thread"] = thread
    return box


def test_collective_sender_and_receiver_round_trip_two_pushes():
    port = free_port()
    box = _join_receiver(port, timeout_s=30)
    sender = CollectiveSender("127.0.0.1", port, 2, "gloo", timeout_s=30)
    box["thread"].join()
    tensors = {"a": torch.randn(2, 3), "b": torch.randn(4), "c": torch.randn(3).to(torch.bfloat16)}
    for push in range(2):
        if push:
            tensors = {k: v * 2 for k, v in tensors.items()}
        got = {}
        rx = threading.Thread(target=lambda: got.update(
            {n: t.clone() for n, t in box["rx"].receive(PLAN)}))
        rx.start()
        payload, sent = sender.send(weights.pack_bucket(b, tensors) for b in PLAN)
        rx.join()
        assert payload == [] and sent == 10 * 4 + 3 * 2
        assert sorted(got) == ["a", "b", "c"]
        for name, t in tensors.items():
            assert torch.equal(got[name], t), (push, name)


def test_receiver_honours_timeout_s_at_rendezvous_and_broadcast():
    # Nobody hosts the store: the receiver gives up after timeout_s (not the 600 s default).
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="timed out after 1000ms"):
        CollectiveReceiver("127.0.0.1", free_port(), 1, 2, "gloo", timeout_s=1.0)
    assert time.monotonic() - t0 < 20
    # Joined, but the sender never sends: the receiver's broadcast gives up after timeout_s too.
    port = free_port()
    box = _join_receiver(port, timeout_s=1.0)
    sender = CollectiveSender("127.0.0.1", port, 2, "gloo", timeout_s=1.0)
    box["thread"].join()
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="Timed out waiting 1000ms"):
        list(box["rx"].receive(PLAN))
    assert time.monotonic() - t0 < 20
    del sender


# Joins the group as rank 1, then its process ends: what a rollout actor that died looks like to rank 0.
JOIN_AND_DIE = textwrap.dedent("""
    import os, sys
    from forkrl.common.transport_collective import CollectiveReceiver
    CollectiveReceiver("127.0.0.1", int(sys.argv[1]), 1, 2, "gloo", 60)
    os._exit(0)
""")


def test_a_send_to_a_dead_receiver_raises_at_once_and_closes_the_sender():
    port = free_port()
    child = subprocess.Popen([sys.executable, "-c", JOIN_AND_DIE, str(port)])
    try:
        sender = CollectiveSender("127.0.0.1", port, 2, "gloo", timeout_s=60)
        assert child.wait(timeout=60) == 0
    finally:
        if child.poll() is None:
            child.kill()
    flats = [weights.pack_bucket(b, {"a": torch.ones(2, 3), "b": torch.ones(4), "c": torch.ones(3)})
             for b in PLAN]
    t0 = time.monotonic()
    with pytest.raises(WeightSendFailed, match="weight broadcast failed at bucket 0: .*closed by peer"):
        sender.send(flats)
    assert time.monotonic() - t0 < 30  # the closed connection is seen, not the 60 s timeout
    # Closed: the next push is refused without touching the dead group again.
    with pytest.raises(WeightSendFailed, match="the weight group failed earlier \\(bucket 0"):
        sender.send(flats)


def test_the_link_carries_the_rendezvous_to_both_ends_and_streams():
    asked = []
    link = Collective.setup(address=lambda: asked.append(1) or ("10.0.0.7", 4242), receivers=3,
                            backend="gloo", timeout_s=12.5)
    assert link == Collective("10.0.0.7", 4242, 4, "gloo", 12.5) and asked == [1]
    assert link.name == "collective" and link.streams is True


def test_the_receiver_refuses_a_payload():
    rx = CollectiveReceiver.__new__(CollectiveReceiver)  # no group needed: refused before any broadcast
    with pytest.raises(ValueError, match="streams: it takes no payload \\(got 2\\)"):
        list(rx.receive(PLAN, [torch.zeros(10), torch.zeros(3)]))
