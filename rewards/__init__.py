"""forkrl's verifier pool: score samples (math answers, code in a sandbox, user functions by import path).

Importing this package does not import Ray; `from forkrl.rewards.pool import VerifierPool` does.
"""

from .config import CodeRewardConfig, MathRewardConfig, RewardConfig
from .math_verifier import answers_equivalent, extract_answer
from .types import Sample, Score
from .verifier import Verifier

__all__ = [
    "CodeRewardConfig", "MathRewardConfig", "RewardConfig", "Sample", "Score", "Verifier",
    "answers_equivalent", "extract_answer",
]
