"""The run: set up the roles, then step (orchestrator.loops) with evaluation, checkpoints and metrics.

`Trainer` holds the run's state and its phases, each one named call on one role:
`generate` (rollout actors), `verify` (verifier pool), `advantages` (here, from the group's rewards),
`train` (learner group) and `push_weights` (learner -> engines). The step loop that orders them,
sync or async, is `self.loop` (orchestrator.loops.make_loop decides the mode, once). One record, the
`Episode`, carries a sample through every phase. The orchestrator owns no model: it moves token ids,
rewards and weight versions between roles.

Around the steps: start-up (orchestrator.startup), fault handling (orchestrator.recovery: a dead
rollout actor or learner rank), checkpoints (orchestrator.checkpoint, placement), evaluation, the
curriculum, the entropy controller, the metrics sink and the progress bar. SIGTERM (`ray job stop`,
spot reclaim) finishes the current phase, checkpoints, and returns `stopped`.
"""
from __future__ import annotations

import contextlib
import logging
import math
import signal
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from forkrl.common.episode import Group, group_by_prompt
from forkrl.orchestrator import checkpoint as ckpt
from forkrl.orchestrator import startup
from forkrl.orchestrator.config import JobConfig
from forkrl.orchestrator.console import progress_bar
from forkrl.orchestrator.evaluation import append_problem_rows, problem_rows
from forkrl.orchestrator.loops import make_loop
from forkrl.orchestrator.recovery import LearnerFailed, Recovery
from forkrl.orchestrator.samples import SampleLog
from forkrl.orchestrator.resolve import resolve_connected
from forkrl.orchestrator.startup import connect_ray
from forkrl.orchestrator.step_metrics import entropy_law_metrics, eval_metrics, fmt
from forkrl.orchestrator.storage import RunStorage

if TYPE_CHECKING:
    from forkrl.actors.rollout import Generated

log = logging.getLogger("forkrl")


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
        self.last_saved_step: int | None = None
        self.stop_reason: str | None = None
        self.last_checkpoint: Path | None = None
        self.bar = None  # progress bar while run() is going
        self.controller = None  # algorithm.entropy_control: the PI controller of one loss coefficient
        self.samples = SampleLog(self.run_dir / "samples.jsonl", cfg.logging.sample_prompts)
        self.loop = make_loop(self)
        self.recovery = Recovery(cfg.trainer.max_restarts, self._restart_learner, lambda: self.pusher.recover())

    @property
    def version(self) -> int:
        """The learner's policy version: owned by the WeightPusher (it bumps it with every push)."""
        return self.pusher.version

    # ---- setup -------------------------------------------------------------------------------
    def setup(self) -> None:
        from forkrl.orchestrator.data import PromptStream, load_data
        from forkrl.orchestrator.metrics import MetricsSink

        cfg = self.cfg
        startup.prepare_run_dir(self.storage, self.resume)
        startup.seed_all(cfg.trainer.seed)
        self.model_path, self.tokenizer, self.pad_id = startup.load_tokenizer(cfg)
        data = load_data(cfg.data)
        for report in data.reports:
            log.info("data %s", report.summary())
        self.data_reports = data.reports
        self.eval_rows = data.eval[: cfg.eval.num_prompts]
        self.stream = PromptStream(data.train, batch_size=cfg.trainer.prompts_per_step, seed=cfg.trainer.seed)

        connect_ray(cfg, self.run_dir)
        job = resolve_connected(cfg, self.run_dir)  # every 'auto' decided, logged, config.resolved.yaml written
        self.cfg = cfg = job.config
        self.layout = job.layout
        self.metrics = MetricsSink(self.run_dir, ray_metrics=cfg.logging.ray_metrics, run=self.run_dir.name,
                                   tensorboard=cfg.logging.tensorboard, wandb_project=cfg.logging.wandb_project,
                                   wandb_mode=cfg.logging.wandb_mode, config=cfg.model_dump(mode="json"))
        roles = startup.start_roles(cfg, self.model_path, self.layout, self.run_dir)
        self.pool, self.rollout, self.learner, self.pusher = roles.pool, roles.rollout, roles.learner, roles.pusher
        self.placement = roles.placement
        ec = cfg.algorithm.entropy_control
        if ec.enabled:
            from forkrl.orchestrator.entropy_control import EntropyController, actuator_value

            self.controller = EntropyController(ec, initial=actuator_value(cfg.learner.loss, ec.actuator))
        if self.resume and not self._restore():
            log.warning("--resume: no checkpoint under %s; starting from scratch", self.storage.location)
        if cfg.algorithm.curriculum.enabled and (self.step_idx == 0 or not self.resume):
            self.apply_curriculum()
        self.initial_state = self._state()  # what a learner restart returns to before any checkpoint

    def apply_curriculum(self) -> dict[str, float]:
        """(Re-)estimate semantic entropy with the current policy and reorder the prompt stream."""
        from forkrl.orchestrator.curriculum import estimate_order
        from forkrl.rewards import answers_equivalent

        cc = self.cfg.algorithm.curriculum
        rows = self.stream.rows[: cc.max_prompts] if cc.max_prompts else list(self.stream.rows)

        def sample_answers(batch):
            groups, _ = self.generate(batch, seed=777 + self.step_idx, n=cc.samples, temperature=cc.temperature)
            self.verify(batch, groups, f"se{self.step_idx}")
            return [[ep.extracted for ep in group] for group in groups]

        order, se = estimate_order(rows, sample_answers, answers_equivalent, cc.num_stages)
        self.stream.set_order(order)
        self.loop.rewind()
        vals = list(se.values())
        return {"curriculum/se_mean": sum(vals) / len(vals), "curriculum/prompts": float(len(vals))}

    # ---- checkpoints -------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        """Everything besides the learner that a checkpoint holds (JSON-safe). The data position is
        the loop's (async mode: that of the oldest request not yet trained on)."""
        data, request = self.loop.data_position()
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
        self.loop.restored(int(state.get("request", 0)))

    def _restore(self) -> bool:
        """Load the last checkpoint into the learner and the loop, and bring the engines to its
        weights. False when there is none."""
        from forkrl.orchestrator.placement import load_on_nodes

        last = ckpt.latest(self.run_dir / "checkpoints")
        if last is None:
            return False
        state = ckpt.load_state(last)
        load_on_nodes(self.placement["learner"], last / "learner", self.learner.load_checkpoint)
        self._load_state(state)
        self.pusher.restore(state["version"])  # the engines hold other weights: bring them to the checkpoint's
        log.info("resumed from %s (step %d)", last, self.step_idx)
        return True

    def _save(self, state: dict[str, Any] | None = None) -> Path:
        """Checkpoint `state` (default: now) with the learner's current weights, atomically; upload it
        when the outputs live on a remote filesystem."""
        from forkrl.orchestrator.placement import save_on_nodes

        state = state or self._state()
        with self.recovery.learner_phase(self.learner):
            path = ckpt.save(self.run_dir / "checkpoints", state["step"], state,
                             lambda d: save_on_nodes(self.placement["learner"], d, self.learner.save_checkpoint),
                             self.cfg.checkpoint.keep_last)
        self.storage.push_checkpoint(path, self.cfg.checkpoint.keep_last)
        self.storage.push_logs()
        self.last_saved_step, self.last_checkpoint = state["step"], path
        return path

    def _restart_learner(self) -> None:
        """For `Recovery`: a new learner group at the last checkpoint (or the initial state), with the
        engines re-synced to it; the loop then redoes the steps since."""
        self.learner.shutdown()
        self.learner, self.placement = startup.place_learner(self.cfg, self.model_path, self.layout, self.rollout,
                                                             self.run_dir)
        self.pusher.rebind_learner(self.learner)  # the old weight group died with the old rank 0
        if not self._restore():
            self._load_state(self.initial_state)
            self.pusher.restore(self.initial_state["version"])

    def request_stop(self, reason: str) -> None:
        """Finish the current phase, checkpoint, and return from run() with `stopped` set."""
        self.stop_reason = reason

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        log.warning("SIGTERM: finishing the current phase, then writing a checkpoint (send it again to "
                    "exit at once)")
        self.request_stop("SIGTERM")
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    # ---- phases ------------------------------------------------------------------------------
    def prompt_ids(self, rows) -> list[list[int]]:
        """Each row's chat messages through the tokenizer's chat template (the engines get token ids)."""
        out = []
        for r in rows:
            ids = self.tokenizer.apply_chat_template(r.messages, add_generation_prompt=True, tokenize=True)
            if isinstance(ids, dict) or hasattr(ids, "keys"):
                ids = ids["input_ids"]
            out.append(list(ids))
        return out

    def generate(self, rows, seed: int, n: int | None = None,
                 temperature: float | None = None) -> tuple[list[Group], Generated]:
        """Generate for `rows` and wait: one Group per row (stamped with the row's id) and the request's
        record. A dead rollout actor is recovered and the request retried once."""
        import ray

        ids = self.prompt_ids(rows)
        try:
            gen = self.rollout.generate(ids, seed=seed, n=n, temperature=temperature)
        except ray.exceptions.RayActorError as e:
            self.recovery.rollout_died(e, self.version)
            self.loop.rollout_restarted()
            gen = self.rollout.generate(ids, seed=seed, n=n, temperature=temperature)
        return group_by_prompt(gen.episodes, [r.uid for r in rows]), gen

    def verify(self, rows, groups: list[Group], tag: str) -> None:
        """Score every Episode in place (reward, correct, extracted, verdict) against its row."""
        from forkrl.rewards.types import Reference

        refs = [Reference(prompt=r.messages[-1]["content"], answer=r.answer, task=r.task) for r in rows]
        self.pool.score_groups(groups, refs, tag)

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

    def train(self, groups: list[Group]) -> dict:
        """One learner step on the groups' Episodes; the learner's metrics."""
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
        every = self.cfg.learner.mechanism_every  # the step being trained is step_idx + 1
        measure = bool(every) and (self.step_idx + 1) % every == 0
        with self.recovery.learner_phase(self.learner):
            return self.learner.train_step(batch, measure_mechanism=measure)

    def push_weights(self) -> dict:
        """Bump the version, send the new weights and wait until every engine holds them (the async
        loop sends without waiting: AsyncLoop.push_weights)."""
        with self.recovery.learner_phase(self.learner):
            return self.pusher.push()

    def step(self) -> dict[str, float] | None:
        """One training step of the run's mode (see orchestrator.loops)."""
        return self.loop.step()

    # ---- evaluation --------------------------------------------------------------------------
    def evaluate(self) -> dict[str, float]:
        """Greedy pass@1 on the held-out prompts with the learner's current weights (in async mode the
        request queues behind the buffered ones, after the latest weight load), and pass@k when asked."""
        if not self.eval_rows:
            return {}
        groups, _ = self.generate(self.eval_rows, seed=12345, n=1, temperature=self.cfg.eval.temperature)
        self.verify(self.eval_rows, groups, f"eval{self.step_idx}")
        self.samples.write(self.step_idx, "eval", self.eval_rows, groups)
        m = eval_metrics(groups)
        e, sampled = self.cfg.eval, None
        if e.pass_k:
            from forkrl.orchestrator.evaluation import pass_at_k_metrics, resolve_sample_temperature

            temp = resolve_sample_temperature(e.sample_temperature, self.cfg.rollout.temperature)
            sampled, _ = self.generate(self.eval_rows, seed=54321, n=e.samples_per_prompt, temperature=temp)
            self.verify(self.eval_rows, sampled, f"passk{self.step_idx}")
            m.update(pass_at_k_metrics([[bool(ep.correct) for ep in g] for g in sampled], e.pass_k))
        append_problem_rows(self.run_dir / "eval_problems.jsonl", problem_rows(self.step_idx, groups, sampled))
        return m

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
            log.info("step 0 eval: %s", fmt(ev))
        self.bar = progress_bar(cfg.logging.progress, cfg.trainer.steps, self.step_idx)
        while self.step_idx < cfg.trainer.steps and not self.stop_reason:
            try:
                self._advance()
            except LearnerFailed as e:
                self.recovery.learner_failed(e, self.step_idx + 1)
        if self.bar is not None:
            self.bar.close()
        self.loop.close()
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
        m = self.step()
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
            ev.update(entropy_law_metrics(self.eval_history))
            m.update(ev)
        self.metrics.log(self.step_idx, m)
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(fmt({k: m[k] for k in ("reward/mean", "policy/entropy", "eval/accuracy",
                                                               "time/step") if k in m}))
        else:
            log.info("step %d: %s", self.step_idx, fmt(m))
        every = cfg.checkpoint.every_steps
        if (every and self.step_idx % every == 0) or self.step_idx == cfg.trainer.steps:
            log.info("checkpoint %s", self._save())
        if cfg.logging.plot and "eval/accuracy" in m:
            plot_run(self.metrics.path, self.run_dir / "curves.png", title=self.run_dir.name)

    def _apply_controller(self) -> None:
        """Give the learner the loss config with the controller's current actuator value."""
        from forkrl.orchestrator.entropy_control import with_actuator

        ec = self.cfg.algorithm.entropy_control
        with self.recovery.learner_phase(self.learner):
            self.learner.set_loss(with_actuator(self.cfg.learner.loss, ec.actuator, self.controller.value))

    def _finish(self) -> str | None:
        """The final HF model (written by rank 0 on its node, copied to the driver) and the curves."""
        from forkrl.orchestrator.metrics import plot_run
        from forkrl.orchestrator.placement import save_on_nodes

        if self.cfg.checkpoint.save_hf_at_end:
            final = self.run_dir / "final_model"
            save_on_nodes(self.placement["learner"], final, self.learner.save_hf)
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

