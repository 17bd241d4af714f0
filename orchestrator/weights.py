"""Weight push from the learner to every rollout actor, and the one counter of weight versions.

`WeightPusher.version` is THE weight version of the run: `push()` bumps it and sends, `restore(v)`
sets it and sends (after a checkpoint load). An engine's `RolloutWorker.weight_version` only records
which of these versions it holds.

Transports: 'collective' (a broadcast group of learner rank 0 + every engine worker: gloo on CPU,
NCCL on GPU) and 'object_store' (one ray.put per bucket; each actor pulls). If the collective
group cannot be formed, or a receiver dies during a push, the pusher switches to the object store for
good and says so. A rollout actor that Ray restarted (fresh engine, initial weights) is brought up to
date through the object store (`recover`). After the learner group was restarted, `rebind_learner`
forms the broadcast group again.
"""
from __future__ import annotations

import logging
import time

import ray

from forkrl.actors.rollout import RolloutGroup
from forkrl.learner.config import WeightSyncConfig
from forkrl.learner.group import LearnerGroup

log = logging.getLogger("forkrl.weights")


class PendingPush:
    """A push that was sent but not yet confirmed. `wait()` returns its sync metrics (after switching
    to the object store and re-sending if a collective receiver died) and raises any other error of
    any learner rank or rollout actor; `done()` answers without blocking."""

    def __init__(self, pusher: "WeightPusher", version: int, started: float, refs: list,
                 collective: bool, nbytes: int = 0) -> None:
        self.version, self.started, self.refs = version, started, refs  # refs: every rank's and actor's
        self.collective, self.nbytes = collective, nbytes  # nbytes: known at send for the object store
        self._pusher = pusher
        self._metrics: dict[str, float] | None = None

    def done(self) -> bool:
        """True once wait() would not block on the transport (it may still raise or fall back)."""
        if self._metrics is not None:
            return True
        ready, _ = ray.wait(self.refs, num_returns=len(self.refs), timeout=0, fetch_local=False)
        return len(ready) == len(self.refs)

    def wait(self) -> dict[str, float]:
        if self._metrics is None:
            self._metrics = self._pusher._finish(self)
        return self._metrics


class WeightPusher:
    def __init__(self, learner: LearnerGroup, rollout: RolloutGroup, cfg: WeightSyncConfig, backend: str):
        self.learner, self.rollout, self.cfg, self.backend = learner, rollout, cfg, backend
        self.version = 0  # the engines start from the learner's initial weights
        self._pending: PendingPush | None = None
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
        refs += self.rollout.init_weight_group_refs(host, port, self.backend, self.cfg.timeout_s)
        ray.get(refs, timeout=self.cfg.timeout_s)

    def push(self, *, wait: bool = True) -> dict[str, float] | PendingPush:
        """Bump `version` and send the learner's current weights as that version.

        wait=True returns sync/{seconds,bytes,gb_per_s,version}. wait=False (async mode) returns a
        `PendingPush` at once. Object store: the learner's export is awaited here (a fast local
        copy); each actor's load is queued behind its in-flight generate (Ray runs an actor's tasks in
        submit order), which stays tagged with the version it ran on. Collective: the broadcast
        occupies learner rank 0 until every receiver joins, i.e. until each engine's current generate
        ends. Call wait() before the learner's weights change again: a re-send through the object
        store after a failure carries the learner's weights at wait() time. At most one push is in
        flight: a new push waits for the previous one first. sync/seconds runs from the send to the
        end of wait(), so in async mode it includes the engines' wait for their generate.
        """
        self._settle()
        self.version += 1
        pending = self._send(self.version)
        return pending.wait() if wait else pending

    def restore(self, version: int) -> dict[str, float]:
        """Set the version (the one a loaded checkpoint or a restarted learner holds) and send it."""
        self._settle()
        self.version = version
        return self._send(version).wait()

    def _settle(self) -> None:
        if self._pending is not None:
            self._pending.wait()
            self._pending = None

    def _send(self, version: int) -> PendingPush:
        started = time.perf_counter()
        if self.transport == "collective":
            recv = self.rollout.receive_broadcast_refs(self.plan, version)
            pending = PendingPush(self, version, started, self.learner.broadcast_weights() + recv, True)
        else:
            exp = self.learner.export_weights_refs()
            loads = self.rollout.load_from_object_store_refs(exp["plan"], exp["refs"], version)
            pending = PendingPush(self, version, started, loads, False, exp["bytes"])
        self._pending = pending
        return pending

    def _finish(self, pending: PendingPush) -> dict[str, float]:
        try:
            results = ray.get(pending.refs)
        except (ray.exceptions.RayError, RuntimeError) as e:
            if not pending.collective:
                raise
            # A receiver died (Ray restarts it with the initial weights) and the group is gone with
            # it: every actor gets this version through the object store from now on.
            log.warning("collective weight push failed (%s); switching to the Ray object store",
                        str(e).splitlines()[0][:200])
            self._fall_back()
            return self._send(pending.version).wait()  # reaches every actor, the restarted one too
        finally:
            if self._pending is pending:
                self._pending = None
        nbytes = results[0]["bytes"] if pending.collective else pending.nbytes  # [0]: learner rank 0
        dt = time.perf_counter() - pending.started
        return {"sync/seconds": dt, "sync/bytes": float(nbytes),
                "sync/gb_per_s": nbytes / 1e9 / max(dt, 1e-9), "sync/version": float(pending.version)}

    def rebind_learner(self, learner: LearnerGroup) -> None:
        """Push from a restarted learner group: the old broadcast group died with its rank 0, so the
        engines join a new one with the new rank 0 (or the object store carries pushes, as at start)."""
        self._pending = None  # its learner is gone; restore() re-sends
        self.learner = learner
        self._connect()

    def recover(self) -> int:
        """After a rollout actor died: wait for Ray's restart, drop the (now broken) collective group
        for the object store, and bring lagging actors to the current version. Returns how many."""
        self._pending = None  # whatever it reached, refresh_stale brings every actor to `version`
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
