"""The synchronous training loop: generate -> verify -> advantages -> train -> push weights.

`Trainer.step` reads like the algorithm; each phase is one named, timed call. Setup (Ray, model,
data, the three roles) and bookkeeping (evaluation, checkpoints, metrics, plots) live around it.
The orchestrator owns no model: it moves token ids, rewards and weight versions between roles.

Faults it handles: a dead rollout actor (Ray restarts it; the weights are re-sent), a dead learner
rank (the group is restarted from the last checkpoint, up to `trainer.max_restarts` times), and
SIGTERM (`ray job stop`, spot reclaim: finish the current phase, checkpoint, return `stopped`).
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
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import torch

from orchestrator import checkpoint as ckpt
from orchestrator.config import JobConfig, dump_config
from orchestrator.storage import RunStorage

log = logging.getLogger("forkrl")


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
        self.version = 0
        self.eval_history: list[tuple[float, float]] = []  # (entropy, held-out accuracy)
        self.last_entropy = float("nan")
        self.learner_restarts = 0
        self.last_saved_step: int | None = None
        self.stop_reason: str | None = None
        self.last_checkpoint: Path | None = None
        self.bar = None  # progress bar while run() is going

    # ---- setup -------------------------------------------------------------------------------
    def setup(self) -> None:
        from transformers import AutoTokenizer

        from actors.rollout import RolloutGroup
        from orchestrator.data import PromptStream, load_data
        from orchestrator.metrics import MetricsSink
        from orchestrator.models import check_model_reachable, resolve_model
        from orchestrator.weights import WeightPusher
        from rewards.pool import VerifierPool

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
        log.info("starting %d verifier(s), %d rollout actor(s), %d learner rank(s)",
                 cfg.reward.num_workers, cfg.rollout.num_actors, cfg.learner.num_ranks)
        self.pool = VerifierPool(cfg.reward)
        self.rollout = RolloutGroup(cfg.rollout, self.model_path)
        self._start_learner()
        self.pusher = WeightPusher(self.learner, self.rollout, cfg.learner.weight_sync,
                                   cfg.learner.resolve_sync_backend())
        if self.resume and not self._restore():
            log.warning("--resume: no checkpoint under %s; starting from scratch", self.storage.location)
        if cfg.algorithm.curriculum.enabled and (self.step_idx == 0 or not self.resume):
            self.apply_curriculum()
        self.initial_state = self._state()  # what a learner restart returns to before any checkpoint

    def _start_learner(self) -> None:
        """Start the learner group and record where every role runs (logged, and placement.json)."""
        from learner.group import LearnerGroup
        from orchestrator.placement import bundle_nodes, driver_node

        self.learner = LearnerGroup(self.cfg.learner, self.model_path, seed=self.cfg.trainer.seed)
        self.learner_nodes = bundle_nodes(self.learner.placement_group)
        self.placement = {"driver": driver_node(), "rollout": bundle_nodes(self.rollout.pg),
                          "learner": self.learner_nodes}
        (self.run_dir / "placement.json").write_text(json.dumps(self.placement, indent=1))
        log.info("placement (node ids): driver %s, rollout %s, learner %s", self.placement["driver"][:8],
                 [n[:8] for n in self.placement["rollout"]], [n[:8] for n in self.learner_nodes])

    def apply_curriculum(self) -> dict[str, float]:
        """(Re-)estimate semantic entropy with the current policy and reorder the prompt stream."""
        from orchestrator.curriculum import estimate_order
        from rewards import answers_equivalent

        cc = self.cfg.algorithm.curriculum
        rows = self.stream.rows[: cc.max_prompts] if cc.max_prompts else list(self.stream.rows)

        def sample_answers(batch):
            out = self.generate(batch, seed=777 + self.step_idx, n=cc.samples, temperature=cc.temperature)
            scores = self.verify(batch, out["generations"], f"se{self.step_idx}")
            answers: list[list] = [[] for _ in batch]
            for g, s in zip(out["generations"], scores):
                answers[g.prompt_index].append(s.extracted)
            return answers

        order, se = estimate_order(rows, sample_answers, answers_equivalent, cc.num_stages)
        self.stream.set_order(order)
        vals = list(se.values())
        return {"curriculum/se_mean": sum(vals) / len(vals), "curriculum/prompts": float(len(vals))}

    # ---- checkpoints and faults --------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        """Everything besides the learner that a checkpoint holds (JSON-safe)."""
        return {"step": self.step_idx, "version": self.version, "data": self.stream.state_dict(),
                "rng": ckpt.capture_rng(), "eval_history": [list(x) for x in self.eval_history]}

    def _load_state(self, state: dict[str, Any]) -> None:
        self.stream.load_state_dict(state["data"])
        ckpt.restore_rng(state["rng"])
        self.step_idx = state["step"]
        self.version = state["version"]
        self.eval_history = [tuple(x) for x in state.get("eval_history", [])]

    def _restore(self) -> bool:
        """Load the last checkpoint into the learner and the loop, and bring the engines to its
        weights. False when there is none."""
        from orchestrator.placement import load_on_nodes

        last = ckpt.latest(self.run_dir / "checkpoints")
        if last is None:
            return False
        state = ckpt.load_state(last)
        load_on_nodes(self.learner.actors, self.learner_nodes, last / "learner",
                      lambda actor, d: actor.load_checkpoint.remote(d, "learner"))
        self._load_state(state)
        self.pusher.push(state["version"])  # the engines hold other weights: bring them to the checkpoint's
        log.info("resumed from %s (step %d)", last, self.step_idx)
        return True

    def _save(self, state: dict[str, Any] | None = None) -> Path:
        """Checkpoint `state` (default: now) with the learner's current weights, atomically; upload it
        when the outputs live on a remote filesystem."""
        from orchestrator.placement import save_on_nodes

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
            self.pusher.push(self.version)

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

    def generate(self, rows, seed: int, n: int | None = None, temperature: float | None = None) -> dict:
        import ray

        ids = self._prompt_ids(rows)
        try:
            return self.rollout.generate(ids, seed=seed, n=n, temperature=temperature)
        except ray.exceptions.RayActorError as e:
            # Ray restarts a dead rollout actor with the initial weights: bring it to the current
            # version, then retry the batch once (nothing was kept from the failed attempt).
            log.warning("rollout actor died (%s); restoring weights v%d and retrying", type(e).__name__,
                        self.version)
            self.pusher.recover()
            return self.rollout.generate(ids, seed=seed, n=n, temperature=temperature)

    def verify(self, rows, gens, tag: str):
        from rewards.types import Sample

        samples = [Sample(uid=f"{tag}/{g.prompt_index}/{g.sample_index}", prompt=rows[g.prompt_index].messages[-1]
                          ["content"], response=g.text, answer=rows[g.prompt_index].answer,
                          task=rows[g.prompt_index].task, finish_reason=g.finish_reason)
                   for g in gens]
        return self.pool.score(samples)

    def advantages(self, groups) -> tuple[torch.Tensor, torch.Tensor]:
        """groups: list of (row, gens, scores) with G samples each -> (rewards [P,G], advantages [P,G])."""
        from orchestrator.advantages import compute_advantages
        from orchestrator.sampling import overlong_penalty

        rewards = torch.tensor([[s.reward for s in scores] for _, _, scores in groups], dtype=torch.float32)
        ol = self.cfg.algorithm.overlong
        if ol.mode == "penalty":
            lengths = torch.tensor([[len(g.response_ids) for g in gens] for _, gens, _ in groups])
            rewards = rewards + overlong_penalty(lengths, self.cfg.rollout.max_new_tokens, ol.buffer)
        return rewards, compute_advantages(self.cfg.algorithm.advantage, rewards)

    def collect(self, timer: PhaseTimer) -> tuple[list, dict]:
        """Draw prompts, generate G samples each and score them; with dynamic sampling keep only
        groups whose rewards differ and refill from up to `max_extra_rounds` more draws."""
        from orchestrator.sampling import keep_mask_nonzero_variance

        cfg = self.cfg
        want = cfg.trainer.prompts_per_step
        ds = cfg.algorithm.dynamic_sampling
        rounds = 1 + (ds.max_extra_rounds if ds.enabled else 0)
        kept, info = [], {"gen_tokens": 0, "gen_seconds": 0.0, "groups_seen": 0, "all_groups": []}
        for r in range(rounds):
            rows = self.stream.next_batch()
            seed = cfg.trainer.seed * 1_000_003 + self.step_idx * 101 + r
            with timer("generate"):
                out = self.generate(rows, seed)
            info["gen_tokens"] += out["tokens"]
            info["gen_seconds"] += out["seconds"]
            with timer("verify"):
                scores = self.verify(rows, out["generations"], f"s{self.step_idx}r{r}")
            by_prompt: list[tuple] = [(row, [], []) for row in rows]
            for g, s in zip(out["generations"], scores):
                by_prompt[g.prompt_index][1].append(g)
                by_prompt[g.prompt_index][2].append(s)
            info["groups_seen"] += len(by_prompt)
            info["all_groups"].extend(by_prompt)
            if ds.enabled:
                rew = torch.tensor([[s.reward for s in sc] for _, _, sc in by_prompt])
                keep = keep_mask_nonzero_variance(rew).tolist()
                kept.extend(grp for grp, k in zip(by_prompt, keep) if k)
            else:
                kept.extend(by_prompt)
            if len(kept) >= want or self.stop_reason:
                break
        return kept[:want], info

    def train(self, groups, advantages: torch.Tensor) -> dict:
        from orchestrator.batching import TrainItem, pack_batch

        mask_overlong = self.cfg.algorithm.overlong.mode == "mask"
        items = [TrainItem(g.prompt_ids, g.response_ids, g.logprobs, float(advantages[p, i]),
                           train=not (mask_overlong and g.truncated))
                 for p, (_, gens, _) in enumerate(groups) for i, g in enumerate(gens)]
        # Similar lengths share a micro-batch, so each is trimmed of less padding (measured ~1.4x fewer
        # tokens through the model on the default job); token-mean losses do not depend on row order.
        items.sort(key=lambda it: len(it.prompt_ids) + len(it.response_ids))
        batch = pack_batch(items, self.pad_id, self.cfg.rollout.temperature)
        with self._learner_phase():
            return self.learner.train_step(batch)

    def push_weights(self) -> dict:
        self.version += 1
        with self._learner_phase():
            return self.pusher.push(self.version)

    # ---- one step ----------------------------------------------------------------------------
    def step(self) -> dict[str, float] | None:
        """One training step; None when a stop was requested before training (the step is abandoned:
        the learner has not moved, so the checkpoint of the step's start state is exact)."""
        timer = PhaseTimer()
        t0 = time.perf_counter()
        groups, info = self.collect(timer)
        if self.stop_reason:
            return None
        m: dict[str, float] = self._rollout_metrics(info)  # before the push bumps the version
        if groups:
            with timer("advantages"):
                rewards, adv = self.advantages(groups)
            with timer("train"):
                train = self.train(groups, adv)
            with timer("push_weights"):
                m.update(self.push_weights())
            m.update({f"train/{k}": v for k, v in train.items() if isinstance(v, (int, float))})
            if "entropy" in train:
                m["policy/entropy"] = train["entropy"]
            m["train/tokens_per_s"] = train.get("tokens_per_s", float("nan"))
        m["step/groups_trained"] = float(len(groups))
        m["step/weight_version"] = float(self.version)
        m["fault/learner_restarts"] = float(self.learner_restarts)
        for name, sec in timer.seconds.items():
            m[f"time/{name}"] = sec
        m["time/step"] = time.perf_counter() - t0
        stats = self.pool.stats()
        m.update({f"verify/{k}": float(v) for k, v in stats.items() if isinstance(v, (int, float))})
        return m

    def _rollout_metrics(self, info: dict) -> dict[str, float]:
        all_scores = [s for _, _, sc in info["all_groups"] for s in sc]
        all_gens = [g for _, gens, _ in info["all_groups"] for g in gens]
        rew = torch.tensor([s.reward for s in all_scores]) if all_scores else torch.zeros(1)
        lens = torch.tensor([float(len(g.response_ids)) for g in all_gens]) if all_gens else torch.zeros(1)
        per_group = [[s.reward for s in sc] for _, _, sc in info["all_groups"]]
        return {
            "reward/mean": float(rew.mean()), "reward/std": float(rew.std()) if rew.numel() > 1 else 0.0,
            "reward/accuracy": float(np.mean([s.correct for s in all_scores])) if all_scores else 0.0,
            "reward/zero_variance_groups": float(sum(1 for g in per_group if len(set(g)) <= 1)),
            "response/length_mean": float(lens.mean()),
            "response/truncated_frac": float(np.mean([g.truncated for g in all_gens])) if all_gens else 0.0,
            "rollout/tokens": float(info["gen_tokens"]),
            "rollout/tokens_per_s": info["gen_tokens"] / max(info["gen_seconds"], 1e-9),
            "rollout/staleness": float(self.version - min((g.weight_version for g in all_gens), default=0)),
        }

    # ---- evaluation --------------------------------------------------------------------------
    def evaluate(self) -> dict[str, float]:
        if not self.eval_rows:
            return {}
        out = self.generate(self.eval_rows, seed=12345, n=1, temperature=self.cfg.eval.temperature)
        scores = self.verify(self.eval_rows, out["generations"], f"eval{self.step_idx}")
        acc = float(np.mean([s.correct for s in scores]))
        return {"eval/accuracy": acc, "eval/reward_mean": float(np.mean([s.reward for s in scores])),
                "eval/response_length": float(np.mean([len(g.response_ids) for g in out["generations"]]))}

    def _entropy_law(self, m: dict[str, float]) -> dict[str, float]:
        """Fit R = -a exp(H) + b over the run so far (Cui et al.); b - a is the predicted ceiling."""
        from orchestrator.entropy_law import fit_entropy_law

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
        from orchestrator.metrics import plot_run

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

    def _finish(self) -> str | None:
        """The final HF model (written by rank 0 on its node, copied to the driver) and the curves."""
        from orchestrator.metrics import plot_run
        from orchestrator.placement import save_on_nodes

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
