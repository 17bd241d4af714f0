"""The verifier pool's own config section; the orchestrator's JobConfig embeds it as-is.

Validation only: nothing here derives values or touches Ray.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class MathRewardConfig(BaseModel):
    """Math answer extraction and the format term. The reward is clamped to [0, 1] after the format term,
    so a bonus only lifts a wrong boxed answer and a penalty only lowers a right unboxed one."""

    model_config = ConfigDict(extra="forbid")

    boxed_bonus: float = Field(0.0, ge=0.0, le=1.0)
    """Added to the reward when the final answer was given in a well-formed \\boxed{} (format reward)."""
    unboxed_penalty: float = Field(0.0, ge=0.0, le=1.0)
    """Subtracted from the reward when the response has no usable \\boxed{} answer (even if correct)."""
    max_answer_chars: int = Field(1000, ge=1)
    """A box longer than this scores 0 ("bad_box: too long"); other extracted answers are cut to it before
    math-verify sees them, because sympy can hang on huge input."""
    parse_timeout_s: int = Field(3, ge=1)
    """math-verify's own (SIGALRM) budget per parse/compare; whole seconds, main thread only."""
    numbers_as_numbers: bool = True
    """When the gold is a number, the answer must be one too (a signed decimal, or a fraction in lowest
    terms), else it scores 0 as "unsimplified". math-verify evaluates expressions, so without this rule
    "\\boxed{7 + 15 - 9}" (the question copied into the box) equals 13: a GRPO run on arithmetic learned
    exactly that in 20 steps (held-out pass@1 0.16 -> 1.0). The same guards judge every extracted answer,
    boxed or not (rewards/math_guards.py): a number that is an operand of arithmetic left undone ("What
    is 0 + 17?" graded 17, in symbols, LaTeX, Unicode or words) is "unsimplified"; an equation chain's
    number sides must agree with each other and with its arithmetic ("contradiction" otherwise:
    "\\boxed{20 = 17 + 3}" is 20, "x = 19 = 20" scores 0); a number only bounded, approximated or
    offered beside another is "hedge". Symbolic golds (\\sqrt{2}, sets, intervals) are still compared
    by equivalence alone."""


class CodeRewardConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cpu_s: int = Field(5, ge=1)
    """RLIMIT_CPU per sandboxed process (CPU seconds); the wall clock is the pool's `timeout_s`."""
    memory_mb: int = Field(1024, ge=64)
    """RLIMIT_AS per sandboxed process (address space, MiB)."""
    max_processes: int = Field(16, ge=1)
    """RLIMIT_NPROC for the sandbox's private uid: caps fork bombs."""
    max_output_bytes: int = Field(1 << 20, ge=1024)
    """RLIMIT_FSIZE: stdout, stderr and every file the program writes; beyond it the program is killed."""
    max_open_files: int = Field(64, ge=16)
    """RLIMIT_NOFILE per sandboxed process."""
    site_packages: bool = False
    """Let programs import third-party packages (numpy, ...). Off: `python -I -S`, stdlib only, faster start."""
    isolation: Literal["auto", "bwrap", "fallback"] = "auto"
    """How code is sandboxed (rewards.sandbox). auto: bubblewrap (read-only minimal file system, private
    tmpfs, own pid/net/ipc namespaces), else a logged WARNING and the weaker fallback (rlimits, private uid,
    netns; host files readable); bwrap: refuse to score code without bubblewrap; fallback: force the
    weaker mode (benchmarks, hosts known to lack user namespaces)."""
    max_record_bytes: int = Field(64 << 10, ge=1024)
    """Longest record the code harness may write per test case (a returned value, encoded). A longer value
    counts as raised; a longer line is refused unparsed, which bounds the time a forged record costs."""
    unjudgeable: Literal["skip", "score"] = "skip"
    """A code problem with a test case that reads none of the candidate's names passes or fails whatever the
    answer. skip: score it 0 with reason "skipped: unjudgeable ..." without running it (counted as the
    metric verdict/skipped; every sample of the prompt gets 0, so GRPO gives the group no advantage);
    score: run and score it anyway."""


class RewardConfig(BaseModel):
    """How samples are scored and how many Ray actors score them."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["auto", "math", "code", "function"] = "auto"
    """auto routes each sample by `Sample.task` ("math", "code", else the user function); the others
    force one scorer for every sample."""
    function: str | None = None
    """User reward function "pkg.mod:fn", called as fn(sample: Sample) -> float | bool | Score."""
    num_workers: int = Field(2, ge=1)
    """Pool size: verifier Ray actors, independent of rollout and learner sizes."""
    cpus_per_worker: float = Field(0.25, ge=0.0)
    """Ray CPU reservation per verifier actor (small: CPU machines are tiny)."""
    timeout_s: float = Field(10.0, gt=0.0)
    """Wall-clock budget per sample; past it the sample scores 0 with reason "timeout"."""
    kill_grace_s: float = Field(2.0, ge=0.0)
    """Extra wait past `timeout_s` before the pool kills (and Ray restarts) a worker stuck on a sample."""
    max_restarts: int = Field(-1, ge=-1)
    """Ray restarts per verifier actor (-1: unlimited); past it the pool replaces the actor."""
    math: MathRewardConfig = Field(default_factory=MathRewardConfig)
    """Answer extraction and format reward for math samples."""
    code: CodeRewardConfig = Field(default_factory=CodeRewardConfig)
    """Sandbox limits for code samples."""

    @model_validator(mode="after")
    def _function_needs_path(self) -> "RewardConfig":
        if self.type == "function" and not self.function:
            raise ValueError("type=function needs `function` set to 'pkg.mod:fn'")
        if self.function is not None and ":" not in self.function:
            raise ValueError(f"function must look like 'pkg.mod:fn', got {self.function!r}")
        return self
