"""Weight push from a real LearnerWorker: a two-process gloo broadcast (learner in this process, the
receiver in a subprocess using common.transport_collective.CollectiveReceiver, as the engines do)."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

os.environ.setdefault("DS_ACCELERATOR", "cpu")

import torch

from forkrl.learner.config import LearnerConfig
from forkrl.common.transport_collective import Collective
from forkrl.learner.engine_setup import free_port

ROOT = Path(__file__).resolve().parents[1]


RECEIVER = textwrap.dedent("""
    import sys, torch
    from forkrl.common.transport_collective import CollectiveReceiver
    addr, port, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    plan = torch.load(out + ".plan", weights_only=False)
    receiver = CollectiveReceiver(addr, port, rank=1, world_size=2, backend="gloo", timeout_s=120)
    received = {}
    for _ in range(2):  # two pushes, as a rollout actor receives one per step
        received.update({name: t.clone() for name, t in receiver.receive(plan)})
    torch.save(received, out)
    # Skip interpreter teardown: destroying the gloo group while the learner's store goes away can
    # abort ("terminate called without an active exception") after the data is already saved.
    sys.stdout.flush()
    import os
    os._exit(0)
""")


def test_collective_broadcast_delivers_identical_tensors(tiny_model_dir, tmp_path):
    from forkrl.learner.types import TrainBatch
    from forkrl.learner.worker import LearnerWorker

    cfg = LearnerConfig(lr=1e-3, weight_sync={"bucket_mb": 0.05})
    worker = LearnerWorker(cfg, str(tiny_model_dir))
    plan = worker.weight_plan()
    assert len(plan) > 1
    out = tmp_path / "received.pt"
    torch.save(plan, str(out) + ".plan")
    port = free_port()
    env = dict(os.environ)
    proc = subprocess.Popen([sys.executable, "-c", RECEIVER, "127.0.0.1", str(port), str(out)], env=env)
    try:
        worker.open_weight_sender(Collective("127.0.0.1", port, 2, "gloo", 120))
        first = worker.send_weights("collective")
        ids = torch.randint(0, 500, (2, 8))
        mask = torch.zeros(2, 8)
        mask[:, 4:] = 1
        worker.train_step(TrainBatch(ids, torch.ones(2, 8), mask, torch.ones(2, 8), torch.zeros(2, 8)))
        second = worker.send_weights("collective")
        assert proc.wait(timeout=120) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    expected = worker.named_parameters_cpu()
    received = torch.load(out)
    assert sorted(received) == sorted(expected)
    for name, t in expected.items():
        assert torch.equal(received[name], t), name
    nbytes = sum(t.numel() * t.element_size() for t in expected.values())
    assert first["bytes"] == second["bytes"] == nbytes
    assert first["buckets"] == len(plan) and second["seconds"] > 0
    assert first["payload"] == second["payload"] == []  # a broadcast hands nothing over
