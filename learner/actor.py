"""The Ray wrapper of one learner rank: `LearnerGroup` places one per rank; each call is the worker's.

`setup()` builds the `LearnerWorker` once rank 0's address is known (every rank at once: the worker's
constructor joins the ranks' process group).
"""
from __future__ import annotations

from typing import Optional

import torch

from forkrl.common import weights
from forkrl.common.transport import Transport
from forkrl.learner.config import LearnerConfig
from forkrl.learner.engine_setup import free_port
from forkrl.learner.loss_config import PolicyLossConfig
from forkrl.learner.types import TrainBatch
from forkrl.learner.worker import LearnerWorker


class LearnerActor:
    def __init__(self, cfg: LearnerConfig, model_path: str, rank: int, world_size: int, seed: int):
        self._args = (cfg, model_path, rank, world_size, seed)
        self.worker: Optional[LearnerWorker] = None

    def get_address(self) -> tuple[str, int]:
        """(IP of this rank's node, a free port there)."""
        import ray

        return ray.util.get_node_ip_address(), free_port()

    def threads(self) -> int:
        return torch.get_num_threads()

    def setup(self, master_addr: str, master_port: int) -> None:
        cfg, model_path, rank, world_size, seed = self._args
        self.worker = LearnerWorker(cfg, model_path, rank, world_size, master_addr, master_port, seed)

    def train_step(self, batch: TrainBatch, global_num_tokens: float, global_num_seqs: float,
                   measure_mechanism: bool = False):
        return self.worker.train_step(batch, global_num_tokens, global_num_seqs, measure_mechanism)

    def compute_logprobs(self, batch: TrainBatch) -> torch.Tensor:
        return self.worker.compute_logprobs(batch)

    def set_loss(self, loss: PolicyLossConfig) -> None:
        self.worker.set_loss(loss)

    def save_checkpoint(self, directory: str, tag: str) -> None:
        self.worker.save_checkpoint(directory, tag)

    def load_checkpoint(self, directory: str, tag: str) -> None:
        self.worker.load_checkpoint(directory, tag)

    def save_hf(self, directory: str) -> None:
        self.worker.save_hf(directory)

    def param_stats(self) -> dict[str, float]:
        return self.worker.param_stats()

    def named_parameters_cpu(self) -> dict[str, torch.Tensor]:
        return self.worker.named_parameters_cpu()

    def weight_plan(self) -> weights.Plan:
        return self.worker.weight_plan()

    def open_weight_sender(self, link: Transport) -> None:
        self.worker.open_weight_sender(link)

    def send_weights(self, transport: str) -> dict:
        return self.worker.send_weights(transport)
