"""Weight push: the bucket plan, and a real two-process gloo broadcast (learner in this process,
receiver in a subprocess using weight_sync.receive_bucket, as the rollout actor will)."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

os.environ.setdefault("DS_ACCELERATOR", "cpu")

import torch

from learner import weight_sync
from learner.config import LearnerConfig
from learner.worker import free_port

ROOT = Path(__file__).resolve().parents[1]


def test_bucket_plan_covers_every_param_once_and_skips_tied(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32)
    state = model.state_dict()
    assert "lm_head.weight" in state  # tied to model.embed_tokens.weight
    plan = weight_sync.bucket_plan(state.items(), bucket_mb=0.1)
    names = [n for b in plan for n, _, _ in b]
    assert "lm_head.weight" not in names
    weight_sync.check_plan_covers(plan, [n for n, _ in model.named_parameters()])
    for bucket in plan:
        assert len({dt for _, dt, _ in bucket}) == 1
        assert len(bucket) == 1 or weight_sync.bucket_nbytes(bucket) <= 0.1 * 2**20
    # DeepSpeed's "module." prefix is stripped; shapes and the flat round trip are exact.
    wrapped = [("module." + n, p) for n, p in model.named_parameters()]
    assert weight_sync.bucket_plan(wrapped, 0.1) == plan
    flat = weight_sync.pack_bucket(plan[0], state)
    for name, t in weight_sync.unpack_bucket(flat, plan[0]):
        assert torch.equal(t, state[name])


RECEIVER = textwrap.dedent("""
    import sys, torch
    from learner import weight_sync
    addr, port, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    plan = torch.load(out + ".plan", weights_only=False)
    pg = weight_sync.create_weight_group(addr, port, rank=1, world_size=2, backend="gloo", timeout_s=120)
    received = {}
    for _ in range(2):  # two pushes, as a rollout actor receives one per step
        for bucket in plan:
            for name, t in weight_sync.receive_bucket(pg, bucket):
                received[name] = t.clone()
    torch.save(received, out)
    # Skip interpreter teardown: destroying the gloo group while the learner's store goes away can
    # abort ("terminate called without an active exception") after the data is already saved.
    sys.stdout.flush()
    import os
    os._exit(0)
""")


def test_collective_broadcast_delivers_identical_tensors(tiny_model_dir, tmp_path):
    from learner.types import TrainBatch
    from learner.worker import LearnerWorker

    cfg = LearnerConfig(lr=1e-3, weight_sync={"bucket_mb": 0.05})
    worker = LearnerWorker(cfg, str(tiny_model_dir))
    plan = worker.weight_plan()
    assert len(plan) > 1
    out = tmp_path / "received.pt"
    torch.save(plan, str(out) + ".plan")
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", RECEIVER, "127.0.0.1", str(port), str(out)], env=env)
    try:
        worker.init_weight_group("127.0.0.1", port, 2)
        first = worker.broadcast_weights()
        ids = torch.randint(0, 500, (2, 8))
        mask = torch.zeros(2, 8)
        mask[:, 4:] = 1
        worker.train_step(TrainBatch(ids, torch.ones(2, 8), mask, torch.ones(2, 8), torch.zeros(2, 8)))
        second = worker.broadcast_weights()
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
