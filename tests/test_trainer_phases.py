"""The trainer's phases on fake roles, without Ray: Episodes flow from the rollout through the verifier
and the advantages into the packed batch, in sync and async mode. The fake rollout replays Ray's
ordering of one actor's tasks (a weight load submitted after a request runs after it), so the async
staleness bound and the sample accounting are checked exactly."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from forkrl.actors.rollout import Generated
from forkrl.common.episode import Episode
from forkrl.orchestrator.config import load_config
from forkrl.orchestrator.data import PromptRow, PromptStream
from forkrl.orchestrator.loops import AsyncLoop, SyncLoop
from forkrl.orchestrator.trainer import Trainer
from forkrl.rewards.pool import VerifierPool


SAMPLE0 = 5000


class FakeRollout:
    """One engine whose task queue runs in submit order: requests and weight loads interleave exactly
    as they were submitted; `collect` runs the queue up to the request it waits for."""

    def __init__(self, samples: int):
        self.samples, self.version, self.tasks, self.generated = samples, 0, [], []

    def submit(self, prompts, seed, n=None, temperature=None):
        task = {"kind": "gen", "prompts": prompts, "n": n or self.samples, "out": None}
        self.tasks.append(task)
        return task

    def load(self, version):
        self.tasks.append({"kind": "load", "version": version})

    def _run_until(self, task):
        while task["out"] is None:
            t = self.tasks.pop(0)
            if t["kind"] == "load":
                self.version = t["version"]
                continue
            eps = []
            for p, ids in enumerate(t["prompts"]):
                for s in range(t["n"]):
                    # one unique response token per sample: the packed batch shows which were trained
                    eps.append(Episode(p, s, list(ids), [SAMPLE0 + len(self.generated)], [-0.5], "stop", "",
                                       self.version))
                    self.generated.append(len(self.generated))
            t["out"] = Generated(eps, 1.0, 1.0, len(eps))

    def collect(self, task):
        self._run_until(task)
        out = task["out"]
        return Generated(list(out.episodes), out.seconds, out.busy_seconds, out.tokens)

    def generate(self, prompts, seed, n=None, temperature=None):
        return self.collect(self.submit(prompts, seed, n, temperature))


class FakePool(VerifierPool):
    """The real pool's Episode -> Sample boundary (score_groups) over a fake scorer, without Ray."""

    def __init__(self):
        pass

    def score(self, samples):
        # correct when the sample number is odd: each group of 2 has one right, one wrong
        return [SimpleNamespace(reward=float(int(s.uid[-1]) % 2), correct=bool(int(s.uid[-1]) % 2),
                                extracted=s.uid[-1], reason="ok") for s in samples]

    def stats(self):
        return {"samples": 0.0}


class FakePush:
    def __init__(self, version):
        self.version = version

    def done(self):
        return True

    def wait(self):
        return {"sync/seconds": 0.0}


class FakePusher:
    def __init__(self, rollout):
        self.rollout, self.version = rollout, 0

    def push(self, wait=True):
        self.version += 1
        self.rollout.load(self.version)
        return {"sync/seconds": 0.0} if wait else FakePush(self.version)


class FakeLearner:
    def __init__(self):
        self.batches, self.losses, self.measured = [], [], []

    def set_loss(self, loss_cfg):
        self.losses.append(loss_cfg)

    def train_step(self, batch, measure_mechanism=False):
        self.batches.append(batch)
        self.measured.append(measure_mechanism)
        return {"entropy": 1.0, "train_seconds": 1.0, "tokens_per_s": 1.0}


class FakeTokenizer:
    def apply_chat_template(self, messages, add_generation_prompt, tokenize):
        return [1, 100 + int(messages[-1]["content"])]


def make_trainer(tmp_path, mode: str, staleness: int = 1, prompts: int = 2, *extra: str) -> Trainer:
    cfg = load_config(None, [f"trainer.mode={mode}", f"trainer.max_staleness={staleness}",
                             "rollout.samples_per_prompt=2", f"trainer.prompts_per_step={prompts}", *extra])
    trainer = Trainer(cfg, tmp_path / "run")
    rows = [PromptRow(uid=f"r{i}", messages=[{"role": "user", "content": str(i)}], answer="1") for i in range(10)]
    trainer.stream = PromptStream(rows, batch_size=prompts, seed=0)
    trainer.tokenizer, trainer.pad_id = FakeTokenizer(), 0
    trainer.rollout = FakeRollout(samples=2)
    trainer.pool, trainer.learner = FakePool(), FakeLearner()
    trainer.pusher = FakePusher(trainer.rollout)
    return trainer


def trained_samples(trainer) -> list[int]:
    """The fake rollout's number of every trained row (its unique response token)."""
    return [int(t) - SAMPLE0 for b in trainer.learner.batches for t in b.input_ids[b.loss_mask > 0]]


def test_the_mode_is_decided_once_by_the_config(tmp_path):
    assert type(make_trainer(tmp_path / "s", "sync").loop) is SyncLoop
    assert type(make_trainer(tmp_path / "a", "async").loop) is AsyncLoop


def test_sync_step_carries_episodes_from_rollout_to_the_batch(tmp_path):
    trainer = make_trainer(tmp_path, "sync")
    m = trainer.step()
    (batch,) = trainer.learner.batches
    # 2 prompts x 2 samples; rewards [0, 1] in each group -> GRPO advantages -+1/sqrt(2) = -+0.7071
    assert batch.num_seqs == 4 and sorted(trained_samples(trainer)) == [0, 1, 2, 3]
    assert sorted(round(float(a), 4) for a in batch.advantages[:, -1]) == [-0.7071, -0.7071, 0.7071, 0.7071]
    assert batch.weight_version.tolist() == [0, 0, 0, 0]
    assert batch.rollout_logprobs[:, -1].tolist() == [-0.5] * 4
    assert m["reward/mean"] == 0.5 and m["step/weight_version"] == 1.0 and m["step/groups_trained"] == 2.0
    assert m["rollout/staleness"] == 0.0
    assert 0.0 <= m["role/learner_busy_frac"] <= 1.0 and 0.0 <= m["role/rollout_busy_frac"] <= 1.0


@pytest.mark.parametrize("staleness", [1, 2])
def test_async_staleness_is_bounded_and_every_sample_is_trained_once(tmp_path, staleness):
    trainer = make_trainer(tmp_path, "async", staleness)
    ages = []
    orig = trainer.train

    def record(groups):
        ages.append(max(trainer.version - ep.weight_version for g in groups for ep in g))
        return orig(groups)

    trainer.train = record
    steps = [trainer.step() for _ in range(6)]
    # steady state: exactly `staleness` versions behind, never more, and nothing dropped
    assert ages == [0] + [min(s, staleness) for s in range(1, 6)]
    assert [m["staleness/max"] for m in steps] == [float(a) for a in ages]
    assert all(m["staleness/dropped_groups"] == 0 for m in steps)
    assert [m["buffer/depth"] for m in steps] == [float(staleness)] * 6
    # 6 steps x 2 prompts x 2 samples, each trained once; everything generated was trained (the
    # `staleness` requests still in flight have not run yet in this fake)
    trained = trained_samples(trainer)
    assert len(trained) == 24 and sorted(trained) == list(range(24))
    assert len(trainer.loop.queue) == staleness
    assert [m["step/weight_version"] for m in steps] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]


def test_async_drops_groups_older_than_the_bound(tmp_path):
    trainer = make_trainer(tmp_path, "async", staleness=1)
    trainer.step()
    trainer.pusher.push()  # an extra version nobody trained for: the buffered request is now 2 behind
    m = trainer.step()
    # the 2 stale groups are dropped and the step refills nothing (no dynamic sampling): it trains none
    assert m["staleness/dropped_groups"] == 2.0 and m["step/groups_trained"] == 0.0
    assert "staleness/max" not in m and len(trainer.learner.batches) == 1
    # stale_groups='keep' trains them (the loss's importance sampling corrects them)
    keep = make_trainer(tmp_path, "async", staleness=1)
    keep.cfg.trainer.stale_groups = "keep"
    keep.step()
    keep.pusher.push()
    m = keep.step()
    assert m["staleness/dropped_groups"] == 0.0 and m["step/groups_trained"] == 2.0 and m["staleness/max"] == 2.0


def test_async_checkpoint_state_points_at_the_oldest_request_in_flight(tmp_path):
    trainer = make_trainer(tmp_path, "async", staleness=2)
    trainer.step()  # consumed request 0; requests 1 and 2 in flight
    state = trainer._state()
    assert state["request"] == 1
    assert state["data"]["position"] == 2  # before request 1's rows (2 prompts per request)
    # a restore forgets the requests in flight and draws their prompts again
    trainer._load_state(state)
    assert len(trainer.loop.queue) == 0 and trainer.loop.queue.next_index == 1 and trainer.stream.position == 2


def test_held_out_pass_at_k_beside_greedy_pass_at_1(tmp_path):
    trainer = make_trainer(tmp_path, "sync", 1, 2, "eval.pass_k=[1, 2]", "eval.samples_per_prompt=4")
    trainer.eval_rows = trainer.stream.rows[:3]
    m = trainer.evaluate()
    # greedy: one sample (index 0) per prompt, wrong in the fake verifier; sampled: 4 per prompt, the
    # odd ones right -> pass@1 = 2/4, pass@2 = 1 - C(2,2)/C(4,2) = 1 - 1/6
    assert m["eval/accuracy"] == 0.0
    assert m["eval/pass@1"] == pytest.approx(0.5) and m["eval/pass@2"] == pytest.approx(5 / 6)


def test_entropy_controller_moves_the_learners_coefficient_each_step(tmp_path):
    from forkrl.orchestrator.entropy_control import actuator_value

    trainer = make_trainer(tmp_path, "sync", 1, 2, "learner.loss={type: kl_cov, beta: 1.0}",
                           "algorithm.entropy_control={enabled: true, actuator: kl_cov_beta, target: 1.5, "
                           "bounds: [0.0, 4.0], kp: 0.5, ki: 0.1}", "eval.every_steps=0",
                           "checkpoint.every_steps=0", "trainer.steps=50", "logging.plot=false")
    from forkrl.orchestrator.entropy_control import EntropyController

    trainer.controller = EntropyController(trainer.cfg.algorithm.entropy_control, 1.0)
    trainer.metrics = SimpleNamespace(log=lambda step, m: logged.append(m))
    logged = []
    trainer._advance()
    trainer._advance()
    # the fake learner measures entropy 1.0 < target 1.5: error 0.5 nats; in units of the range [0, 4]:
    # x0 = 0.25, step 1: x = 0.25 + 0.5*0.5 + 0.1*0.5 = 0.55 -> beta 2.2; step 2: + 0.1*0.5 -> 0.60 -> 2.4
    assert [actuator_value(c, "kl_cov_beta") for c in trainer.learner.losses] == pytest.approx([2.2, 2.4])
    assert [m["entropy_control/actuator"] for m in logged] == pytest.approx([2.2, 2.4])
    assert logged[0]["entropy_control/error"] == pytest.approx(0.5) and logged[0]["entropy_control/target"] == 1.5
    assert trainer._state()["entropy_control"]["value"] == pytest.approx(2.4)


@pytest.mark.parametrize("packing,expected", [(True, [0, 0, 1, 1]), (False, [0, 1, 0, 1])])
def test_rows_keep_groups_together_for_the_packed_learner(tmp_path, packing, expected):
    """The packed learner computes a prompt once per micro-batch only if its samples share one: groups
    go to it whole and in order. The padded learner gets rows sorted by length (less padding)."""
    trainer = make_trainer(tmp_path, "sync", 1, 2, f"learner.packing={str(packing).lower()}")
    lengths = iter([3, 1, 2, 4])  # prompt 0's two samples, then prompt 1's
    collect = trainer.rollout.collect

    def varied(task):
        out = collect(task)
        for ep in out.episodes:
            n = next(lengths)
            ep.response_ids, ep.logprobs = list(ep.response_ids) * n, list(ep.logprobs) * n
        return out

    trainer.rollout.collect = varied
    trainer.step()
    (batch,) = trainer.learner.batches
    prompts = batch.input_ids[:, 1].tolist()  # FakeTokenizer: [1, 100 + the prompt's number]
    order = list(dict.fromkeys(prompts))  # label groups by first appearance: 0, 1
    assert [order.index(p) for p in prompts] == expected
    assert sorted(batch.attention_mask.sum(1).tolist()) == [3, 4, 5, 6]  # 2 prompt tokens + 1..4


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_steps_and_evaluations_keep_scored_samples_without_changing_the_run(tmp_path, mode):
    from forkrl.orchestrator.samples import read_samples

    quiet = make_trainer(tmp_path / "quiet", mode, 1, 2, "logging.sample_prompts=0")
    logged = make_trainer(tmp_path / "logged", mode, 1, 2, "logging.sample_prompts=1")
    logged.eval_rows = logged.stream.rows[:3]
    quiet.eval_rows = quiet.stream.rows[:3]
    step = [t.step() for t in (quiet, logged)]
    for t in (quiet, logged):
        t.evaluate()
    # the same batches whether or not samples are logged
    (a,), (b,) = quiet.learner.batches, logged.learner.batches
    assert a.input_ids.tolist() == b.input_ids.tolist() and a.advantages.tolist() == b.advantages.tolist()
    assert not (tmp_path / "quiet" / "run" / "samples.jsonl").exists()
    lines = read_samples(tmp_path / "logged" / "run" / "samples.jsonl")
    # one training line (step 1, the first prompt's sample 0) and one eval line (step 0)
    assert [(x["kind"], x["step"], x["sample"], x["verdict"]) for x in lines] == [("train", 1, 0, "ok"),
                                                                                  ("eval", 0, 0, "ok")]
    assert lines[1]["prompt_id"] == "r0" and lines[1]["gold"] == "1"
    assert step[1]["verdict/ok"] == 1.0 and step[1]["verdict/wrong_answer"] == 0.0


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_the_mechanism_is_measured_on_every_nth_trained_step(tmp_path, mode):
    trainer = make_trainer(tmp_path, mode, 1, 2, "learner.mechanism_every=3")
    for idx in range(6):  # the run loop bumps step_idx after each step: step idx + 1 is being trained
        trainer.step_idx = idx
        trainer.step()
    assert trainer.learner.measured == [False, False, True, False, False, True]
    off = make_trainer(tmp_path / "off", mode)
    off.step()
    assert off.learner.measured == [False]
