"""The synchronous training loop: generate -> verify -> advantages -> train -> push weights.

`Trainer.step` reads like the algorithm; each phase is one named, timed call. Setup (Ray, model,
data, the three roles) and bookkeeping (evaluation, checkpoints, metrics, plots) live around it.
The orchestrator owns no model: it moves token ids, rewards and weight versions between roles.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from orchestrator import checkpoint as ckpt
from orchestrator.config import JobConfig, dump_config

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


def connect_ray(cfg: JobConfig) -> None:
    """Join $RAY_ADDRESS / cluster.address, else start a local Ray sized for every bundle."""
    import ray

    if ray.is_initialized():
        return
    env = {"env_vars": {"TOKENIZERS_PARALLELISM": "false"}}
    address = cfg.cluster.address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, namespace=cfg.cluster.namespace, runtime_env=env)
        return
    need = (cfg.rollout.num_actors * cfg.rollout.cpus_per_actor + cfg.learner.num_ranks * cfg.learner.cpus_per_rank
            + cfg.reward.num_workers * cfg.reward.cpus_per_worker)
    num_cpus = cfg.cluster.num_cpus or max(os.cpu_count() or 1, math.ceil(need))
    kwargs: dict[str, Any] = {}
    if cfg.cluster.metrics_export_port:
        kwargs["_metrics_export_port"] = cfg.cluster.metrics_export_port
    ray.init(num_cpus=num_cpus, include_dashboard=cfg.cluster.dashboard, dashboard_host="127.0.0.1",
             namespace=cfg.cluster.namespace, runtime_env=env, **kwargs)


class Trainer:
    def __init__(self, cfg: JobConfig, run_dir: Path, resume: bool = False):
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.resume = resume
        self.step_idx = 0
        self.version = 0
        self.eval_history: list[tuple[float, float]] = []  # (entropy, held-out accuracy)

    # ---- setup -------------------------------------------------------------------------------
    def setup(self) -> None:
        from transformers import AutoTokenizer

        from actors.rollout import RolloutGroup
        from learner.group import LearnerGroup
        from orchestrator.data import PromptStream, load_data
        from orchestrator.metrics import MetricsSink
        from orchestrator.models import check_model_reachable, resolve_model
        from orchestrator.weights import WeightPusher
        from rewards.pool import VerifierPool

        cfg = self.cfg
        self.run_dir.mkdir(parents=True, exist_ok=True)
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

        connect_ray(cfg)
        log.info("starting %d verifier(s), %d rollout actor(s), %d learner rank(s)",
                 cfg.reward.num_workers, cfg.rollout.num_actors, cfg.learner.num_ranks)
        self.pool = VerifierPool(cfg.reward)
        self.rollout = RolloutGroup(cfg.rollout, self.model_path)
        self.learner = LearnerGroup(cfg.learner, self.model_path, seed=cfg.trainer.seed)
        self.pusher = WeightPusher(self.learner, self.rollout, cfg.learner.weight_sync,
                                   cfg.learner.resolve_sync_backend())
        self.metrics = MetricsSink(self.run_dir, ray_metrics=cfg.logging.ray_metrics,
                                   job=self.run_dir.name)
        if self.resume:
            self._restore()
        if cfg.algorithm.curriculum.enabled and (self.step_idx == 0 or not self.resume):
            self.apply_curriculum()

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

    def _restore(self) -> None:
        last = ckpt.latest(self.run_dir / "checkpoints")
        if last is None:
            log.warning("--resume: no checkpoint under %s; starting from scratch", self.run_dir / "checkpoints")
            return
        state = ckpt.load_state(last)
        self.learner.load_checkpoint(str(last / "learner"))
        self.stream.load_state_dict(state["data"])
        ckpt.restore_rng(state["rng"])
        self.step_idx = state["step"]
        self.eval_history = [tuple(x) for x in state.get("eval_history", [])]
        # The engines still hold the initial weights: bring them to the checkpoint's.
        self.pusher.push(state["version"])
        self.version = state["version"]
        log.info("resumed from %s (step %d)", last, self.step_idx)

    def _save(self) -> Path:
        state = {"step": self.step_idx, "version": self.version, "data": self.stream.state_dict(),
                 "rng": ckpt.capture_rng(), "eval_history": self.eval_history}
        return ckpt.save(self.run_dir / "checkpoints", self.step_idx, state,
                         lambda d: self.learner.save_checkpoint(str(d)), self.cfg.checkpoint.keep_last)

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
            if len(kept) >= want:
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
        return self.learner.train_step(batch)

    def push_weights(self) -> dict:
        self.version += 1
        return self.pusher.push(self.version)

    # ---- one step ----------------------------------------------------------------------------
    def step(self) -> dict[str, float]:
        timer = PhaseTimer()
        t0 = time.perf_counter()
        groups, info = self.collect(timer)
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
        from orchestrator.metrics import plot_run

        cfg = self.cfg
        self.setup()
        t_start = time.perf_counter()
        last_entropy = float("nan")
        if cfg.eval.at_start and cfg.eval.every_steps and self.step_idx == 0:
            ev = self.evaluate()
            self.metrics.log(0, ev)
            log.info("step 0 eval: %s", _fmt(ev))
        bar = _progress(cfg, self.step_idx)
        cc = cfg.algorithm.curriculum
        while self.step_idx < cfg.trainer.steps:
            m = self.step()
            self.step_idx += 1
            if cc.enabled and cc.reestimate_every_steps and self.step_idx % cc.reestimate_every_steps == 0 \
                    and self.step_idx < cfg.trainer.steps:
                m.update(self.apply_curriculum())
            if not math.isnan(m.get("policy/entropy", float("nan"))):
                if not math.isnan(last_entropy):
                    m["policy/entropy_change"] = m["policy/entropy"] - last_entropy
                last_entropy = m["policy/entropy"]
            if cfg.eval.every_steps and (self.step_idx % cfg.eval.every_steps == 0 or self.step_idx == cfg.trainer.steps):
                ev = self.evaluate()
                if ev and not math.isnan(last_entropy):
                    self.eval_history.append((last_entropy, ev["eval/accuracy"]))
                ev.update(self._entropy_law(m))
                m.update(ev)
            self.metrics.log(self.step_idx, m)
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(_fmt({k: m[k] for k in ("reward/mean", "policy/entropy", "eval/accuracy",
                                                           "time/step") if k in m}))
            else:
                log.info("step %d: %s", self.step_idx, _fmt(m))
            every = cfg.checkpoint.every_steps
            if (every and self.step_idx % every == 0) or self.step_idx == cfg.trainer.steps:
                path = self._save()
                log.info("checkpoint %s", path)
            if cfg.logging.plot and "eval/accuracy" in m:
                plot_run(self.metrics.path, self.run_dir / "curves.png", title=self.run_dir.name)
        if bar is not None:
            bar.close()
        if cfg.checkpoint.save_hf_at_end:
            self.learner.save_hf(str(self.run_dir / "final_model"))
        png = plot_run(self.metrics.path, self.run_dir / "curves.png", title=self.run_dir.name) \
            if cfg.logging.plot else None
        return {"steps": self.step_idx, "seconds": time.perf_counter() - t_start, "run_dir": str(self.run_dir),
                "plot": str(png) if png else None}

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
