"""The training loop: generate -> verify -> advantages -> train -> push weights, sync or async.

`Trainer.step` (sync: one role works at a time) and `Trainer.step_async` (rollout keeps generating
into a bounded buffer while the learner trains) read like the algorithm; each phase is one named,
timed call. One record, the `Episode`, carries a sample through every phase. Setup (Ray, model, data,
the three roles) and bookkeeping (evaluation, checkpoints, metrics, plots) live around them. The
orchestrator owns no model: it moves token ids, rewards and weight versions between roles.

Faults it handles: a dead rollout actor (Ray restarts it; the weights are re-sent and its requests
submitted again), a dead learner rank (the group is restarted from the last checkpoint, up to
`trainer.max_restarts` times), and SIGTERM (`ray job stop`, spot reclaim: finish the current phase,
checkpoint, return `stopped`).
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import torch

from forkrl.common.episode import Group, group_by_prompt
from forkrl.orchestrator import checkpoint as ckpt
from forkrl.learner.config import LearnerConfig
from forkrl.orchestrator.config import JobConfig, dump_config
from forkrl.orchestrator.samples import SampleLog, verdict_fractions
from forkrl.orchestrator.storage import RunStorage

log = logging.getLogger("forkrl")


def learner_config(cfg: JobConfig) -> LearnerConfig:
    """cfg.learner with weight_sync.wire_dtype 'auto' resolved to the rollout engines' dtype (logged)."""
    ws = cfg.learner.weight_sync
    if ws.wire_dtype != "auto":
        return cfg.learner
    wire = cfg.rollout.resolved_dtype()
    log.info("weight push: parameters travel in %s (the engines' dtype)", wire)
    return cfg.learner.model_copy(update={"weight_sync": ws.model_copy(update={"wire_dtype": wire})})


class PhaseTimer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0


@dataclass
class Collected:
    """What one step's collection produced besides the groups it keeps: everything generated (for the
    rollout metrics, dropped groups included) and how long the rollout role was busy for it."""

    seen: list[Group] = field(default_factory=list)
    tokens: int = 0
    seconds: float = 0.0  # wall time of the requests (slowest actor each)
    busy_seconds: float = 0.0  # generation seconds summed over actors
    stale_dropped: int = 0  # groups older than trainer.max_staleness (async mode, stale_groups='drop')
    in_flight: int = 0  # requests in the buffer when training started (async mode)


def ray_init_args(cfg: JobConfig, env: Mapping[str, str]) -> dict[str, Any]:
    """The ray.init arguments of a job. `cluster.address` (host:port, or 'auto' for this machine's
    `ray start` cluster) or $RAY_ADDRESS (set by `ray job submit`) joins that cluster and passes no
    resources (Ray refuses them when joining). Otherwise a private local Ray, started explicitly with
    address='local': without it, ray.init() follows Ray's "current cluster" file, which a `ray start`
    cluster - alive, or killed without `ray stop` - leaves behind, and then fails on num_cpus."""
    common: dict[str, Any] = {"namespace": cfg.cluster.namespace,
                              "runtime_env": {"env_vars": {"TOKENIZERS_PARALLELISM": "false"}}}
    address = cfg.cluster.address or env.get("RAY_ADDRESS")
    if address:
        return {"address": address, **common}
    need = (cfg.rollout.num_actors * cfg.rollout.cpus_per_actor + cfg.learner.num_ranks * cfg.learner.cpus_per_rank
            + cfg.reward.num_workers * cfg.reward.cpus_per_worker)
    local: dict[str, Any] = {"address": "local", "num_cpus": cfg.cluster.num_cpus or max(os.cpu_count() or 1,
                                                                                          math.ceil(need)),
                             "include_dashboard": cfg.cluster.dashboard, "dashboard_host": "127.0.0.1"}
    if cfg.cluster.metrics_export_port:
        local["_metrics_export_port"] = cfg.cluster.metrics_export_port
    return {**local, **common}


def connect_ray(cfg: JobConfig) -> None:
    import ray

    if ray.is_initialized():
        return
    args = ray_init_args(cfg, os.environ)
    ray.init(**args)
    where = "started a private local Ray" if args["address"] == "local" else f"joined Ray at {args['address']}"
    log.info("%s (%s)", where, ray.get_runtime_context().gcs_address)


class LearnerFailed(RuntimeError):
    """A learner rank died during a learner phase; the run loop restarts the group."""


class Trainer:
    def __init__(self, cfg: JobConfig, run_dir: str | Path, resume: bool = False):
        """run_dir: where the run's outputs live, an absolute path or a filesystem URI
        (orchestrator.storage); the trainer works in `self.run_dir`, a local directory."""
        self.cfg = cfg
        self.storage = RunStorage(str(run_dir))
        self.run_dir = self.storage.local
        self.resume = resume
        self.step_idx = 0
        self.eval_history: list[tuple[float, float]] = []  # (entropy, held-out accuracy)
        self.last_entropy = float("nan")
        self.learner_restarts = 0
        self.last_saved_step: int | None = None
        self.stop_reason: str | None = None
        self.last_checkpoint: Path | None = None
        self.bar = None  # progress bar while run() is going
        self.queue = None  # async mode: the requests in flight (orchestrator.rollout_queue)
        self.controller = None  # algorithm.entropy_control: the PI controller of one loss coefficient
        self.pending_push = None  # async mode: the last weight push, sent but not yet confirmed
        self.last_push_metrics: dict[str, float] = {}  # async mode: of the last confirmed push
        self.samples = SampleLog(self.run_dir / "samples.jsonl", cfg.logging.sample_prompts)

    @property
    def version(self) -> int:
        """The learner's policy version: owned by the WeightPusher (it bumps it with every push)."""
        return self.pusher.version

    # ---- setup -------------------------------------------------------------------------------
    def setup(self) -> None:
        from transformers import AutoTokenizer

        from forkrl.actors.rollout import RolloutGroup
        from forkrl.orchestrator.data import PromptStream, load_data
        from forkrl.orchestrator.layout import resolve_layout
        from forkrl.orchestrator.metrics import MetricsSink
        from forkrl.orchestrator.models import check_model_reachable, resolve_model
        from forkrl.orchestrator.rollout_queue import RolloutQueue
        from forkrl.orchestrator.weights import WeightPusher
        from forkrl.rewards.pool import VerifierPool

        cfg = self.cfg
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.resume:
            self.storage.pull_for_resume()
        (self.run_dir / "config.resolved.yaml").write_text(dump_config(cfg))
        random.seed(cfg.trainer.seed)
        np.random.seed(cfg.trainer.seed)
        torch.manual_seed(cfg.trainer.seed)

        self.model_path = resolve_model(cfg.model.path)
        if not Path(self.model_path).is_dir():  # a hub id: fail in one line if it cannot be fetched
            check_model_reachable(self.model_path)
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_path)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None \
            else self.tokenizer.eos_token_id
        data = load_data(cfg.data)
        for report in data.reports:
            log.info("data %s", report.summary())
        self.data_reports = data.reports
        self.eval_rows = data.eval[: cfg.eval.num_prompts]
        self.stream = PromptStream(data.train, batch_size=cfg.trainer.prompts_per_step, seed=cfg.trainer.seed)
        self.metrics = MetricsSink(self.run_dir, ray_metrics=cfg.logging.ray_metrics, job=self.run_dir.name,
                                   tensorboard=cfg.logging.tensorboard, wandb_project=cfg.logging.wandb_project,
                                   wandb_mode=cfg.logging.wandb_mode, config=cfg.model_dump(mode="json"))

        connect_ray(cfg)
        import ray

        self.layout = resolve_layout(cfg.trainer.layout, cfg.trainer.mode,
                                     on_gpu=bool(cfg.rollout.gpus_per_actor or cfg.learner.gpus_per_rank),
                                     joins_cluster=bool(cfg.cluster.address or os.environ.get("RAY_ADDRESS")),
                                     node_cpus=os.cpu_count() or 1,
                                     alive_nodes=sum(1 for n in ray.nodes() if n["Alive"]))
        log.info("mode %s, layout %s (threads: rollout %s, learner %s); starting %d verifier(s), %d rollout "
                 "actor(s), %d learner rank(s)", cfg.trainer.mode, self.layout.name, self.layout.rollout_threads
                 or "bundle", self.layout.learner_threads or "bundle", cfg.reward.num_workers,
                 cfg.rollout.num_actors, cfg.learner.num_ranks)
        self.pool = VerifierPool(cfg.reward)
        self.rollout = RolloutGroup(cfg.rollout, self.model_path, threads=self.layout.rollout_threads)
        self._start_learner()
        self.pusher = WeightPusher(self.learner, self.rollout, cfg.learner.weight_sync,
                                   cfg.learner.resolve_sync_backend())
        if cfg.trainer.mode == "async":
            self.queue = RolloutQueue(self._draw, self._submit)
        ec = cfg.algorithm.entropy_control
        if ec.enabled:
            from forkrl.orchestrator.entropy_control import EntropyController, actuator_value

            self.controller = EntropyController(ec, initial=actuator_value(cfg.learner.loss, ec.actuator))
        if self.resume and not self._restore():
            log.warning("--resume: no checkpoint under %s; starting from scratch", self.storage.location)
        if cfg.algorithm.curriculum.enabled and (self.step_idx == 0 or not self.resume):
            self.apply_curriculum()
        self.initial_state = self._state()  # what a learner restart returns to before any checkpoint

    def _start_learner(self) -> None:
        """Start the learner group and record where every role runs (logged, and placement.json)."""
        from forkrl.learner.group import LearnerGroup
        from forkrl.orchestrator.placement import bundle_nodes, driver_node

        self.learner = LearnerGroup(learner_config(self.cfg), self.model_path, seed=self.cfg.trainer.seed,
                                    threads=self.layout.learner_threads)
        self.learner_nodes = bundle_nodes(self.learner.placement_group)
        self.placement = {"driver": driver_node(), "rollout": bundle_nodes(self.rollout.pg),
                          "learner": self.learner_nodes}
        (self.run_dir / "placement.json").write_text(json.dumps(self.placement, indent=1))
        log.info("placement (node ids): driver %s, rollout %s, learner %s", self.placement["driver"][:8],
                 [n[:8] for n in self.placement["rollout"]], [n[:8] for n in self.learner_nodes])

    def apply_curriculum(self) -> dict[str, float]:
        """(Re-)estimate semantic entropy with the current policy and reorder the prompt stream."""
        from forkrl.orchestrator.curriculum import estimate_order
        from forkrl.rewards import answers_equivalent

        cc = self.cfg.algorithm.curriculum
        rows = self.stream.rows[: cc.max_prompts] if cc.max_prompts else list(self.stream.rows)

        def sample_answers(batch):
            out = self.generate(batch, seed=777 + self.step_idx, n=cc.samples, temperature=cc.temperature)
            self.verify(batch, out["groups"], f"se{self.step_idx}")
            return [[ep.extracted for ep in group] for group in out["groups"]]

        order, se = estimate_order(rows, sample_answers, answers_equivalent, cc.num_stages)
        self.stream.set_order(order)
        if self.queue is not None:
            # Requests in flight were drawn in the old order: regenerate from the new one.
            self._rewind_queue()
        vals = list(se.values())
        return {"curriculum/se_mean": sum(vals) / len(vals), "curriculum/prompts": float(len(vals))}

    # ---- checkpoints and faults --------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        """Everything besides the learner that a checkpoint holds (JSON-safe). In async mode the data
        position is that of the oldest request not yet trained on: a resume draws it again."""
        data, request = self.stream.state_dict(), 0
        if self.queue is not None:
            point = self.queue.resume_point()
            data, request = point if point is not None else (data, self.queue.next_index)
        state = {"step": self.step_idx, "version": self.version, "data": data, "request": request,
                 "rng": ckpt.capture_rng(), "eval_history": [list(x) for x in self.eval_history]}
        if self.controller is not None:
            state["entropy_control"] = self.controller.state_dict()
        return state

    def _load_state(self, state: dict[str, Any]) -> None:
        """The loop's part of a checkpoint (the caller brings the learner and the engines to it)."""
        self.stream.load_state_dict(state["data"])
        ckpt.restore_rng(state["rng"])
        self.step_idx = state["step"]
        self.eval_history = [tuple(x) for x in state.get("eval_history", [])]
        if self.controller is not None and "entropy_control" in state:
            self.controller.load_state_dict(state["entropy_control"])
            self._apply_controller()  # a (re)started learner holds the recipe's coefficient
        if self.queue is not None:
            self.queue.clear()  # their prompts are drawn again from the restored stream position
            self.queue.next_index = int(state.get("request", 0))
            self.pending_push = None

    def _restore(self) -> bool:
        """Load the last checkpoint into the learner and the loop, and bring the engines to its
        weights. False when there is none."""
        from forkrl.orchestrator.placement import load_on_nodes

        last = ckpt.latest(self.run_dir / "checkpoints")
        if last is None:
            return False
        state = ckpt.load_state(last)
        load_on_nodes(self.learner.actors, self.learner_nodes, last / "learner",
                      lambda actor, d: actor.load_checkpoint.remote(d, "learner"))
        self._load_state(state)
        self.pusher.restore(state["version"])  # the engines hold other weights: bring them to the checkpoint's
        log.info("resumed from %s (step %d)", last, self.step_idx)
        return True

    def _save(self, state: dict[str, Any] | None = None) -> Path:
        """Checkpoint `state` (default: now) with the learner's current weights, atomically; upload it
        when the outputs live on a remote filesystem."""
        from forkrl.orchestrator.placement import save_on_nodes

        state = state or self._state()

        def write_learner(d: Path) -> None:
            save_on_nodes(self.learner.actors, self.learner_nodes, d,
                          lambda actor, p: actor.save_checkpoint.remote(p, "learner"))

        with self._learner_phase():
            path = ckpt.save(self.run_dir / "checkpoints", state["step"], state, write_learner,
                             self.cfg.checkpoint.keep_last)
        self.storage.push_checkpoint(path, self.cfg.checkpoint.keep_last)
        self.storage.push_logs()
        self.last_saved_step, self.last_checkpoint = state["step"], path
        return path

    @contextlib.contextmanager
    def _learner_phase(self) -> Iterator[None]:
        """Turn a Ray error into LearnerFailed when a learner rank is dead (a live rank that lost its
        peer may fail first with a collective error). Other errors pass through unchanged."""
        import ray

        try:
            yield
        except ray.exceptions.RayError as e:
            dead = self._dead_learner_ranks()
            if not dead:
                raise
            raise LearnerFailed(f"learner rank(s) {dead} died ({type(e).__name__})") from e

    def _dead_learner_ranks(self) -> list[int]:
        import ray

        refs = [a.get_address.remote() for a in self.learner.actors]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=10)  # a rank stuck in a collective: alive
        dead = []
        for rank, ref in enumerate(refs):
            if ref in ready:
                try:
                    ray.get(ref)
                except ray.exceptions.RayActorError:
                    dead.append(rank)
        return dead

    def _recover_learner(self, err: LearnerFailed) -> None:
        """Tear the learner group down, start it again, load the last checkpoint (or the initial
        state), re-sync the engines; the loop then redoes the steps since that checkpoint."""
        if self.learner_restarts >= self.cfg.trainer.max_restarts:
            log.error("%s; trainer.max_restarts=%d reached", err, self.cfg.trainer.max_restarts)
            raise err
        self.learner_restarts += 1
        log.warning("%s at step %d; restarting the learner group (%d of %d)", err, self.step_idx + 1,
                    self.learner_restarts, self.cfg.trainer.max_restarts)
        self.learner.shutdown()
        self._start_learner()
        self.pusher.rebind_learner(self.learner)  # the old weight group died with the old rank 0
        if not self._restore():
            self._load_state(self.initial_state)
            self.pusher.restore(self.initial_state["version"])

    def _recover_rollout(self, err: Exception) -> None:
        """Ray restarts a dead rollout actor with the initial weights: bring it to the current version
        (later requests then run on it; nothing generated by the failed attempt is kept)."""
        log.warning("rollout actor died (%s); restoring weights v%d", type(err).__name__, self.version)
        self.pending_push = None  # the recovery loads the current version everywhere
        self.pusher.recover()

    def request_stop(self, reason: str) -> None:
        """Finish the current phase, checkpoint, and return from run() with `stopped` set."""
        self.stop_reason = reason

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        log.warning("SIGTERM: finishing the current phase, then writing a checkpoint (send it again to "
                    "exit at once)")
        self.request_stop("SIGTERM")
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    # ---- phases ------------------------------------------------------------------------------
    def _prompt_ids(self, rows) -> list[list[int]]:
        out = []
        for r in rows:
            ids = self.tokenizer.apply_chat_template(r.messages, add_generation_prompt=True, tokenize=True)
            if isinstance(ids, dict) or hasattr(ids, "keys"):
                ids = ids["input_ids"]
            out.append(list(ids))
        return out

    def _groups(self, rows, out: dict) -> dict:
        """A collected request with its Episodes split into one Group per row, stamped with row ids."""
        return dict(out, groups=group_by_prompt(out.pop("episodes"), [r.uid for r in rows]))

    def generate(self, rows, seed: int, n: int | None = None, temperature: float | None = None) -> dict:
        """Generate for `rows` and wait: {"groups" (one per row), "seconds", "busy_seconds", "tokens"}."""
        import ray

        ids = self._prompt_ids(rows)
        try:
            out = self.rollout.generate(ids, seed=seed, n=n, temperature=temperature)
        except ray.exceptions.RayActorError as e:
            self._recover_rollout(e)
            if self.queue is not None:
                self.queue.resubmit()
            out = self.rollout.generate(ids, seed=seed, n=n, temperature=temperature)  # retried once
        return self._groups(rows, out)

    def verify(self, rows, groups: list[Group], tag: str) -> None:
        """Score every Episode (in place: reward, correct, extracted, verdict)."""
        from forkrl.rewards.types import Sample

        episodes = [ep for g in groups for ep in g]
        samples = []
        for row, group in zip(rows, groups):
            for ep in group:
                samples.append(Sample(uid=f"{tag}/{ep.uid}", prompt=row.messages[-1]["content"],
                                      response=ep.text, answer=row.answer, task=row.task,
                                      finish_reason=ep.finish_reason))
        for ep, score in zip(episodes, self.pool.score(samples)):
            ep.reward, ep.correct, ep.extracted, ep.verdict = score.reward, score.correct, score.extracted, \
                score.reason

    def advantages(self, groups: list[Group]) -> torch.Tensor:
        """Write each Episode's advantage (from its group's rewards, shaped by the overlong penalty
        when that is on); returns the shaped rewards [P, G]."""
        from forkrl.orchestrator.advantages import compute_advantages
        from forkrl.orchestrator.sampling import overlong_penalty

        rewards = torch.tensor([[ep.reward for ep in g] for g in groups], dtype=torch.float32)
        ol = self.cfg.algorithm.overlong
        if ol.mode == "penalty":
            lengths = torch.tensor([[len(ep.response_ids) for ep in g] for g in groups])
            rewards = rewards + overlong_penalty(lengths, self.cfg.rollout.max_new_tokens, ol.buffer)
        adv = compute_advantages(self.cfg.algorithm.advantage, rewards)
        for p, group in enumerate(groups):
            for i, ep in enumerate(group):
                ep.advantage = float(adv[p, i])
        return rewards

    def _keep(self, groups: list[Group]) -> list[Group]:
        """Dynamic sampling (DAPO): keep groups whose rewards differ."""
        from forkrl.orchestrator.sampling import keep_mask_nonzero_variance

        if not self.cfg.algorithm.dynamic_sampling.enabled:
            return groups
        keep = keep_mask_nonzero_variance(torch.tensor([[ep.reward for ep in g] for g in groups])).tolist()
        return [g for g, k in zip(groups, keep) if k]

    def _rounds(self) -> int:
        ds = self.cfg.algorithm.dynamic_sampling
        return 1 + (ds.max_extra_rounds if ds.enabled else 0)

    def collect(self, timer: PhaseTimer) -> tuple[list[Group], Collected]:
        """Draw prompts, generate G samples each and score them; with dynamic sampling keep only
        groups whose rewards differ and refill from up to `max_extra_rounds` more draws."""
        want = self.cfg.trainer.prompts_per_step
        kept: list[Group] = []
        got = Collected()
        for r in range(self._rounds()):
            rows = self.stream.next_batch()
            seed = self.cfg.trainer.seed * 1_000_003 + self.step_idx * 101 + r
            with timer("generate"):
                out = self.generate(rows, seed)
            with timer("verify"):
                self.verify(rows, out["groups"], f"s{self.step_idx}r{r}")
            if r == 0:
                self.samples.write(self.step_idx + 1, "train", rows, out["groups"])
            self._account(got, out)
            kept.extend(self._keep(out["groups"]))
            if len(kept) >= want or self.stop_reason:
                break
        return kept[:want], got

    @staticmethod
    def _account(got: Collected, out: dict) -> None:
        got.seen.extend(out["groups"])
        got.tokens += out["tokens"]
        got.seconds += out["seconds"]
        got.busy_seconds += out["busy_seconds"]

    # ---- async mode: the request buffer ------------------------------------------------------
    def _draw(self) -> tuple[list, dict]:
        state = self.stream.state_dict()
        return self.stream.next_batch(), state

    def _submit(self, request):
        seed = self.cfg.trainer.seed * 1_000_003 + 500_009 + request.index * 101
        return self.rollout.submit(self._prompt_ids(request.rows), seed=seed)

    def _rewind_queue(self) -> None:
        """Drop the requests in flight and put the stream back where the oldest was drawn."""
        point = self.queue.resume_point()
        self.queue.clear()
        if point is not None:
            self.stream.load_state_dict(point[0])
            self.queue.next_index = point[1]

    def _take(self, timer: PhaseTimer):
        """Wait for the oldest request in flight; after a rollout actor died, recover it and submit
        every request in flight again. Returns (request, collected output with groups)."""
        import ray

        self.queue.fill(1)
        request = self.queue.pop()
        with timer("wait_rollout"):
            try:
                out = self.rollout.collect(request.handle)
            except ray.exceptions.RayActorError as e:
                self._recover_rollout(e)
                self.queue.resubmit(first=request)
                request = self.queue.pop()
                out = self.rollout.collect(request.handle)
        return request, self._groups(request.rows, out)

    def collect_async(self, timer: PhaseTimer) -> tuple[list[Group], Collected]:
        """Take generated requests from the buffer (oldest first), refill it to `max_staleness`
        requests so generation goes on while this step verifies and trains, score, drop groups older
        than `max_staleness` versions (unless stale_groups='keep'), and apply dynamic sampling."""
        t = self.cfg.trainer
        kept: list[Group] = []
        got = Collected()
        for r in range(self._rounds()):
            request, out = self._take(timer)
            self.queue.fill(t.max_staleness)
            with timer("verify"):
                self.verify(request.rows, out["groups"], f"a{request.index}")
            self.samples.write(self.step_idx + 1, "train", request.rows, out["groups"])
            self._account(got, out)
            groups = out["groups"]
            if t.stale_groups == "drop":
                fresh = [g for g in groups if self.version - g[0].weight_version <= t.max_staleness]
                got.stale_dropped += len(groups) - len(fresh)
                groups = fresh
            kept.extend(self._keep(groups))
            if len(kept) >= self.cfg.trainer.prompts_per_step or self.stop_reason:
                break
        got.in_flight = len(self.queue)
        return kept[: self.cfg.trainer.prompts_per_step], got

    def _confirm_push(self, wait: bool) -> None:
        """Confirm the last weight push (`wait`: block until it landed; it normally has, since each
        engine loads it right after the request it was running). A load that failed because a rollout
        actor died triggers that actor's recovery and a new submission of the requests in flight."""
        import ray

        push = self.pending_push
        if push is None or not (wait or push.done()):
            return
        self.pending_push = None
        try:
            self.last_push_metrics = push.wait()
        except ray.exceptions.RayActorError as e:
            self._recover_rollout(e)
            self.queue.resubmit()

    # ---- learning ----------------------------------------------------------------------------
    def train(self, groups: list[Group]) -> dict:
        from forkrl.orchestrator.batching import pack_batch

        episodes = [ep for g in groups for ep in g]
        # Packed learner (learner.packing): groups stay whole and in order, so a micro-batch holds every
        # sample of its prompts and each prompt is computed once (with G = 8 and micro-batches of 16,
        # two whole groups each). Padded learner: similar lengths share a micro-batch, so each is
        # trimmed of less padding (measured ~1.4x fewer tokens through the model on the default job).
        # Token-mean losses do not depend on row order.
        if not self.cfg.learner.packing:
            episodes.sort(key=lambda ep: len(ep.prompt_ids) + len(ep.response_ids))
        batch = pack_batch(episodes, self.pad_id, self.cfg.rollout.temperature,
                           mask_truncated=self.cfg.algorithm.overlong.mode == "mask")
        with self._learner_phase():
            return self.learner.train_step(batch)

    def push_weights(self, wait: bool = True) -> dict:
        """Bump the version and send the new weights. `wait=False` (async mode): the engines load them
        after their in-flight request and the learner goes on at once; the metrics reported are those
        of the previous push, confirmed by now."""
        if wait:
            with self._learner_phase():
                return self.pusher.push()
        self._confirm_push(wait=True)
        with self._learner_phase():
            self.pending_push = self.pusher.push(wait=False)
        return dict(self.last_push_metrics, **{"sync/version": float(self.pending_push.version)})

    # ---- one step ----------------------------------------------------------------------------
    def step(self) -> dict[str, float] | None:
        """One synchronous training step; None when a stop was requested before training (the step is
        abandoned: the learner has not moved, so the checkpoint of the step's start state is exact)."""
        timer = PhaseTimer()
        t0 = time.perf_counter()
        groups, got = self.collect(timer)
        if self.stop_reason:
            return None
        m = self._rollout_metrics(got)  # before the push bumps the version
        if groups:
            with timer("advantages"):
                self.advantages(groups)
            with timer("train"):
                train = self.train(groups)
            with timer("push_weights"):
                m.update(self.push_weights())
            m.update(self._train_metrics(train))
        return self._step_metrics(m, timer, t0, groups, got)

    def step_async(self) -> dict[str, float] | None:
        """One asynchronous step: the rollout actors keep generating the buffered requests while this
        step scores, trains and pushes (without waiting for the engines to load). None as in `step`."""
        timer = PhaseTimer()
        t0 = time.perf_counter()
        self._confirm_push(wait=False)
        groups, got = self.collect_async(timer)
        if self.stop_reason:
            return None
        m = self._rollout_metrics(got)
        m.update(self._staleness_metrics(groups, got))
        if groups:
            with timer("advantages"):
                self.advantages(groups)
            with timer("train"):
                train = self.train(groups)
            with timer("push_weights"):
                m.update(self.push_weights(wait=False))
            m.update(self._train_metrics(train))
        return self._step_metrics(m, timer, t0, groups, got)

    def _train_metrics(self, train: dict) -> dict[str, float]:
        m = {f"train/{k}": v for k, v in train.items() if isinstance(v, (int, float))}
        if "entropy" in train:
            m["policy/entropy"] = train["entropy"]
        m["train/tokens_per_s"] = train.get("tokens_per_s", float("nan"))
        return m

    def _staleness_metrics(self, groups: list[Group], got: Collected) -> dict[str, float]:
        """Versions between the learner and the trained groups (min/mean/max), groups dropped as too
        old, and the requests left in flight while this step trains."""
        m = {"staleness/dropped_groups": float(got.stale_dropped), "buffer/depth": float(got.in_flight)}
        if groups:
            ages = [self.version - g[0].weight_version for g in groups]
            m.update({"staleness/min": float(min(ages)), "staleness/mean": float(np.mean(ages)),
                      "staleness/max": float(max(ages))})
        return m

    def _step_metrics(self, m: dict[str, float], timer: PhaseTimer, t0: float, groups: list[Group],
                      got: Collected) -> dict[str, float]:
        wall = time.perf_counter() - t0
        m["step/groups_trained"] = float(len(groups))
        m["step/weight_version"] = float(self.version)
        m["fault/learner_restarts"] = float(self.learner_restarts)
        for name, sec in timer.seconds.items():
            m[f"time/{name}"] = sec
        m["time/step"] = wall
        # Fraction of the step's wall time each role computed (async: a request consumed now may have
        # been generated during the previous step, so the rollout's figure is an estimate, capped at 1).
        learner_s = m.get("train/train_seconds", 0.0) + timer.seconds.get("push_weights", 0.0)
        m["role/rollout_busy_frac"] = min(1.0, got.busy_seconds / self.cfg.rollout.num_actors / max(wall, 1e-9))
        m["role/learner_busy_frac"] = min(1.0, learner_s / max(wall, 1e-9))
        m["role/verifier_busy_frac"] = min(1.0, timer.seconds.get("verify", 0.0) / max(wall, 1e-9))
        stats = self.pool.stats()
        m.update({f"verify/{k}": float(v) for k, v in stats.items() if isinstance(v, (int, float))})
        return m

    def _rollout_metrics(self, got: Collected) -> dict[str, float]:
        episodes = [ep for g in got.seen for ep in g]
        rew = torch.tensor([ep.reward for ep in episodes]) if episodes else torch.zeros(1)
        lens = torch.tensor([float(len(ep.response_ids)) for ep in episodes]) if episodes else torch.zeros(1)
        return {
            "reward/mean": float(rew.mean()), "reward/std": float(rew.std()) if rew.numel() > 1 else 0.0,
            "reward/accuracy": float(np.mean([ep.correct for ep in episodes])) if episodes else 0.0,
            "reward/zero_variance_groups": float(sum(1 for g in got.seen if len({ep.reward for ep in g}) <= 1)),
            "response/length_mean": float(lens.mean()),
            "response/truncated_frac": float(np.mean([ep.truncated for ep in episodes])) if episodes else 0.0,
            "rollout/tokens": float(got.tokens),
            "rollout/tokens_per_s": got.tokens / max(got.seconds, 1e-9),
            "rollout/staleness": float(self.version - min((ep.weight_version for ep in episodes), default=0)),
            **verdict_fractions(episodes),
        }

    # ---- evaluation --------------------------------------------------------------------------
    def evaluate(self) -> dict[str, float]:
        """Greedy pass@1 on the held-out prompts with the learner's current weights (in async mode the
        request queues behind the buffered ones, after the latest weight load)."""
        if not self.eval_rows:
            return {}
        out = self.generate(self.eval_rows, seed=12345, n=1, temperature=self.cfg.eval.temperature)
        self.verify(self.eval_rows, out["groups"], f"eval{self.step_idx}")
        self.samples.write(self.step_idx, "eval", self.eval_rows, out["groups"])
        episodes = [ep for g in out["groups"] for ep in g]
        m = {"eval/accuracy": float(np.mean([ep.correct for ep in episodes])),
             "eval/reward_mean": float(np.mean([ep.reward for ep in episodes])),
             "eval/response_length": float(np.mean([len(ep.response_ids) for ep in episodes])),
             **verdict_fractions(episodes, prefix="eval/verdict/")}
        e = self.cfg.eval
        if e.pass_k:
            from forkrl.orchestrator.evaluation import pass_at_k_metrics, resolve_sample_temperature

            temp = resolve_sample_temperature(e.sample_temperature, self.cfg.rollout.temperature)
            out = self.generate(self.eval_rows, seed=54321, n=e.samples_per_prompt, temperature=temp)
            self.verify(self.eval_rows, out["groups"], f"passk{self.step_idx}")
            m.update(pass_at_k_metrics([[bool(ep.correct) for ep in g] for g in out["groups"]], e.pass_k))
        return m

    def _entropy_law(self, m: dict[str, float]) -> dict[str, float]:
        """Fit R = -a exp(H) + b over the run so far (Cui et al.); b - a is the predicted ceiling."""
        from forkrl.orchestrator.entropy_law import fit_entropy_law

        fit = fit_entropy_law([h for h, _ in self.eval_history], [r for _, r in self.eval_history])
        if not fit:
            return {}
        return {"entropy_law/a": fit["a"], "entropy_law/b": fit["b"], "entropy_law/ceiling": fit["ceiling"],
                "entropy_law/r2": fit["r2"]}

    # ---- the run -----------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Set up, then train to `trainer.steps` (see run_loop)."""
        self.setup()
        return self.run_loop()

    def run_loop(self) -> dict[str, Any]:
        """Train from the current step to `trainer.steps`. Returns a summary; `stopped` is set when
        SIGTERM / request_stop ended it early (a checkpoint of where it stopped was written)."""
        cfg = self.cfg
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._on_sigterm)  # after ray.init, which installs its own
        t_start = time.perf_counter()
        if cfg.eval.at_start and cfg.eval.every_steps and self.step_idx == 0:
            ev = self.evaluate()
            self.metrics.log(0, ev)
            log.info("step 0 eval: %s", _fmt(ev))
        self.bar = _progress(cfg, self.step_idx)
        while self.step_idx < cfg.trainer.steps and not self.stop_reason:
            try:
                self._advance()
            except LearnerFailed as e:
                self._recover_learner(e)
        if self.bar is not None:
            self.bar.close()
        self._confirm_push(wait=True)  # async: the engines end on the final weights, errors surface here
        summary = {"steps": self.step_idx, "seconds": time.perf_counter() - t_start,
                   "run_dir": self.storage.location, "plot": None, "stopped": self.stop_reason}
        if self.stop_reason:
            if self.last_saved_step != self.step_idx:
                self._save()
            summary["checkpoint"] = f"{self.storage.location}/checkpoints/{self.last_checkpoint.name}"
        else:
            summary["plot"] = self._finish()
        self.metrics.close()
        self.storage.push_logs()
        return summary

    def _advance(self) -> None:
        """One step and its bookkeeping: curriculum, entropy change, evaluation, log, checkpoint."""
        from forkrl.orchestrator.metrics import plot_run

        cfg = self.cfg
        start = self._state()
        m = self.step_async() if cfg.trainer.mode == "async" else self.step()
        if m is None:  # stopped before training: checkpoint the step's start state
            path = self._save(start)
            log.info("checkpoint %s (step %d abandoned before training)", path, self.step_idx + 1)
            return
        self.step_idx += 1
        cc = cfg.algorithm.curriculum
        if cc.enabled and cc.reestimate_every_steps and self.step_idx % cc.reestimate_every_steps == 0 \
                and self.step_idx < cfg.trainer.steps and not self.stop_reason:
            m.update(self.apply_curriculum())
        if not math.isnan(m.get("policy/entropy", float("nan"))):
            if not math.isnan(self.last_entropy):
                m["policy/entropy_change"] = m["policy/entropy"] - self.last_entropy
            self.last_entropy = m["policy/entropy"]
        if self.controller is not None:
            self.controller.update(self.step_idx, m.get("policy/entropy", float("nan")))
            self._apply_controller()
            m.update(self.controller.metrics())
        if cfg.eval.every_steps and not self.stop_reason and (
                self.step_idx % cfg.eval.every_steps == 0 or self.step_idx == cfg.trainer.steps):
            ev = self.evaluate()
            if ev and not math.isnan(self.last_entropy):
                self.eval_history.append((self.last_entropy, ev["eval/accuracy"]))
            ev.update(self._entropy_law(m))
            m.update(ev)
        self.metrics.log(self.step_idx, m)
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(_fmt({k: m[k] for k in ("reward/mean", "policy/entropy", "eval/accuracy",
                                                                "time/step") if k in m}))
        else:
            log.info("step %d: %s", self.step_idx, _fmt(m))
        every = cfg.checkpoint.every_steps
        if (every and self.step_idx % every == 0) or self.step_idx == cfg.trainer.steps:
            log.info("checkpoint %s", self._save())
        if cfg.logging.plot and "eval/accuracy" in m:
            plot_run(self.metrics.path, self.run_dir / "curves.png", title=self.run_dir.name)

    def _apply_controller(self) -> None:
        """Give the learner the loss config with the controller's current actuator value."""
        from forkrl.orchestrator.entropy_control import with_actuator

        ec = self.cfg.algorithm.entropy_control
        with self._learner_phase():
            self.learner.set_loss(with_actuator(self.cfg.learner.loss, ec.actuator, self.controller.value))

    def _finish(self) -> str | None:
        """The final HF model (written by rank 0 on its node, copied to the driver) and the curves."""
        from forkrl.orchestrator.metrics import plot_run
        from forkrl.orchestrator.placement import save_on_nodes

        if self.cfg.checkpoint.save_hf_at_end:
            final = self.run_dir / "final_model"
            save_on_nodes(self.learner.actors, self.learner_nodes, final, lambda actor, d: actor.save_hf.remote(d))
            self.storage.push_dir(final)
        if not self.cfg.logging.plot:
            return None
        png = plot_run(self.metrics.path, self.run_dir / "curves.png", title=self.run_dir.name)
        return str(png) if png else None

    def shutdown(self) -> None:
        for part in ("pool", "rollout", "learner"):
            obj = getattr(self, part, None)
            if obj is not None:
                with contextlib.suppress(Exception):
                    obj.shutdown()


def _progress(cfg: JobConfig, start: int):
    if not cfg.logging.progress:
        return None
    from tqdm import tqdm

    return tqdm(total=cfg.trainer.steps, initial=start, desc="forkrl", unit="step", dynamic_ncols=True)


def _fmt(m: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.4g}" for k, v in m.items())
