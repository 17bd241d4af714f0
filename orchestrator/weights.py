"""Weight push from the learner to every rollout actor, behind one `push(version)` call.

Transports: 'collective' (a broadcast group of learner rank 0 + every engine worker: gloo on CPU,
NCCL on GPU) and 'object_store' (one ray.put per bucket; each actor pulls). If the collective
group cannot be formed, the pusher falls back to the object store and says so. A rollout actor that
Ray restarted (fresh engine, initial weights) is brought up to date through the object store. After
the learner group was restarted, `rebind_learner` forms the broadcast group again.
"""
from __future__ import annotations

import logging
import time

import ray

from actors.rollout import RolloutGroup
from learner.config import WeightSyncConfig
from learner.group import LearnerGroup

log = logging.getLogger("forkrl.weights")


class WeightPusher:
    def __init__(self, learner: LearnerGroup, rollout: RolloutGroup, cfg: WeightSyncConfig, backend: str):
        self.learner, self.rollout, self.cfg, self.backend = learner, rollout, cfg, backend
        self.version = 0
        self._connect()

    def _connect(self) -> None:
        self.plan = self.learner.weight_plan()
        self.transport = self.cfg.transport
        if self.transport == "collective":
            try:
                self._init_group()
            except Exception as e:  # noqa: BLE001 - any rendezvous failure: degrade, do not die
                log.warning("collective weight group failed (%s); falling back to the Ray object store", e)
                self.transport = "object_store"

    def _init_group(self) -> None:
        host, port = self.learner.weight_group_address()
        world = 1 + self.rollout.num_receiver_ranks
        refs = [self.learner.init_weight_group(host, port, world)]
        refs += self.rollout.init_weight_group_refs(host, port, self.backend)
        ray.get(refs, timeout=self.cfg.timeout_s)

    def push(self, version: int) -> dict[str, float]:
        """Send the learner's current weights; returns sync/{seconds,bytes,gb_per_s} for the log."""
        t0 = time.perf_counter()
        if self.transport == "collective":
            try:
                recv = self.rollout.receive_broadcast_refs(self.plan, version)
                sent = ray.get(self.learner.broadcast_weights())
                ray.get(recv)
                nbytes = sent["bytes"]
            except (ray.exceptions.RayError, RuntimeError) as e:
                # A receiver died (Ray restarts it with the initial weights) and the group is gone
                # with it: every actor gets this version through the object store from now on.
                log.warning("collective weight push failed (%s); switching to the Ray object store",
                            str(e).splitlines()[0][:200])
                self._fall_back()
                return self.push(version)  # the object-store push reaches every actor anyway
        else:
            exp = self.learner.export_weights_refs()
            self.rollout.load_from_object_store(exp["plan"], exp["refs"], version)
            nbytes = exp["bytes"]
        self.version = version
        dt = time.perf_counter() - t0
        return {"sync/seconds": dt, "sync/bytes": float(nbytes), "sync/gb_per_s": nbytes / 1e9 / max(dt, 1e-9)}

    def rebind_learner(self, learner: LearnerGroup) -> None:
        """Push from a restarted learner group: the old broadcast group died with its rank 0, so the
        engines join a new one with the new rank 0 (or the object store carries pushes, as at start)."""
        self.learner = learner
        self._connect()

    def recover(self) -> int:
        """After a rollout actor died: wait for Ray's restart, drop the (now broken) collective group
        for the object store, and bring lagging actors to the current version. Returns how many."""
        self._fall_back()
        return self.refresh_stale()

    def _fall_back(self) -> None:
        self.rollout.wait_restarted()
        self.transport = "object_store"

    def refresh_stale(self) -> int:
        """Reload actors whose weight version lags (e.g. restarted by Ray); returns how many."""
        stale = [a for a, v in zip(self.rollout.actors, self.rollout.weight_versions()) if v != self.version]
        if stale:
            exp = self.learner.export_weights_refs()
            self.rollout.load_from_object_store(exp["plan"], exp["refs"], self.version, actors=stale)
        return len(stale)
