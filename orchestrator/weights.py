"""Weight push from the learner to every rollout actor, and the one counter of weight versions.

`WeightPusher.version` is THE weight version of the run: `push()` bumps it and sends, `restore(v)`
sets it and sends (after a checkpoint load). An engine's `RolloutWorker.weight_version` only records
which of these versions it holds.

The transport is `learner.weight_sync.transport`, one of `common.transports.TRANSPORTS` (the interface:
`common.transport`): 'collective' (a broadcast group of learner rank 0 + every engine worker: gloo on
CPU, NCCL on GPU) or 'object_store' (one ray.put per bucket; each actor fetches). The pusher opens a
link (`Transport.setup`, then the sender on learner rank 0 and a receiver in every engine worker) and
drives each push the same way whatever the transport; only whether the receivers run with the sender
(`streams`) or after it, with its payload, differs. If the link cannot be opened, or a push over it
fails (a receiver died), the pusher switches to the object store (`common.transports.FALLBACK`) for
good and says so. A rollout actor that Ray restarted (fresh engine, initial weights) is brought up to
date through the object store (`recover`). After the learner group was restarted, `rebind_learner`
opens the configured link again.
"""
from __future__ import annotations

import logging
import time

import ray

from forkrl.actors.rollout import RolloutGroup
from forkrl.common.transport import Transport
from forkrl.common.transports import FALLBACK, transport_class
from forkrl.learner.config import WeightSyncConfig
from forkrl.learner.group import LearnerGroup

log = logging.getLogger("forkrl.weights")


class PendingPush:
    """A push that was sent but not yet confirmed. `wait()` returns its sync metrics (after switching
    to the object store and re-sending if the link failed) and raises any other error of any learner
    rank or rollout actor; `done()` answers without blocking."""

    def __init__(self, pusher: "WeightPusher", version: int, started: float, refs: list,
                 link: Transport, nbytes: int | None = None) -> None:
        self.version, self.started, self.refs = version, started, refs  # refs: every rank's and actor's
        self.link = link  # the link it went over
        self.nbytes = nbytes  # known at send when the sender handed over a payload; else rank 0's result
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
        """backend: learner.weight_sync.backend resolved (`LearnerConfig.resolve_sync_backend()`)."""
        self.learner, self.rollout, self.cfg, self.backend = learner, rollout, cfg, backend
        self.version = 0  # the engines start from the learner's initial weights
        self._pending: PendingPush | None = None
        self._connect()

    @property
    def transport(self) -> str:
        """The name of the transport pushes go over now (the configured one, or the fallback's)."""
        return self.link.name

    def _connect(self) -> None:
        """Open the configured link; if that fails (and it is not the fallback already), the fallback."""
        self.plan = self.learner.weight_plan()
        kind = transport_class(self.cfg.transport)
        try:
            self._open(kind)
        except Exception as e:  # noqa: BLE001 - any rendezvous failure: degrade, do not die
            if kind is FALLBACK:
                raise
            log.warning("%s weight link failed (%s); falling back to the Ray object store", kind.name, e)
            self._open(FALLBACK)

    def _open(self, kind: type[Transport]) -> None:
        """Set up a link of `kind` and build both ends: the sender on learner rank 0, a receiver in
        every engine worker, all at once (a broadcast group forms only when every rank joined).
        Waits at most weight_sync.timeout_s, except for the fallback: opening it needs no peer, but
        on a live actor it queues behind a failed link's pending task (issue 23 bounds those)."""
        link = kind.setup(address=self.learner.sender_address, receivers=self.rollout.num_receiver_ranks,
                          backend=self.backend, timeout_s=self.cfg.timeout_s)
        refs = [self.learner.open_weight_sender(link)] + self.rollout.open_weight_receivers(link)
        ray.get(refs, timeout=None if kind is FALLBACK else self.cfg.timeout_s)
        self.link = link

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

    def _send(self, version: int, actors=None) -> PendingPush:
        """Send the learner's weights as `version` over the current link, to every actor (or `actors`,
        for a link that does not stream: a broadcast needs every receiver)."""
        started = time.perf_counter()
        name = self.link.name
        sent = self.learner.send_weights(name)  # one ref per learner rank, rank 0's first
        if self.link.streams:  # the receivers take part in the send: submit theirs before waiting
            recv = self.rollout.receive_weights_refs(self.plan, version, name, [])
            pending = PendingPush(self, version, started, sent + recv, self.link)
        else:  # the sender hands over a payload: it is sent once every rank is through
            head = ray.get(sent)[0]
            recv = self.rollout.receive_weights_refs(self.plan, version, name, head["payload"], actors)
            pending = PendingPush(self, version, started, recv, self.link, head["bytes"])
        self._pending = pending
        return pending

    def _finish(self, pending: PendingPush) -> dict[str, float]:
        try:
            results = ray.get(pending.refs)
        except (ray.exceptions.RayError, RuntimeError) as e:
            if isinstance(pending.link, FALLBACK):
                raise
            # A receiver died (Ray restarts it with the initial weights) and the link is gone with
            # it (the sender raised WeightSendFailed, or a receiver's task failed): every actor gets
            # this version through the object store from now on.
            log.warning("%s weight push failed (%s); switching to the Ray object store",
                        pending.link.name, str(e).splitlines()[0][:200])
            self._fall_back()
            return self._send(pending.version).wait()  # reaches every actor, the restarted one too
        finally:
            if self._pending is pending:
                self._pending = None
        nbytes = results[0]["bytes"] if pending.nbytes is None else pending.nbytes  # [0]: learner rank 0
        dt = time.perf_counter() - pending.started
        return {"sync/seconds": dt, "sync/bytes": float(nbytes),
                "sync/gb_per_s": nbytes / 1e9 / max(dt, 1e-9), "sync/version": float(pending.version)}

    def rebind_learner(self, learner: LearnerGroup) -> None:
        """Push from a restarted learner group: the old link died with its rank 0, so the engines
        join a new one with the new rank 0 (or the object store carries pushes, as at start)."""
        self._pending = None  # its learner is gone; restore() re-sends
        self.learner = learner
        self._connect()

    def recover(self) -> int:
        """After a rollout actor died: wait for Ray's restart, drop the (now broken) link for the
        object store, and bring lagging actors to the current version. Returns how many."""
        self._pending = None  # whatever it reached, _refresh_stale brings every actor to `version`
        self._fall_back()
        return self._refresh_stale()

    def _fall_back(self) -> None:
        """Wait for Ray to restart a dead actor, then open the fallback link on every end."""
        self.rollout.wait_restarted()
        self._open(FALLBACK)

    def _refresh_stale(self) -> int:
        """Reload actors whose weight version lags (e.g. restarted by Ray) over the fallback link
        (which reaches any subset of actors, unlike a broadcast); returns how many."""
        stale = [a for a, v in zip(self.rollout.actors, self.rollout.weight_versions()) if v != self.version]
        if stale:
            self._send(self.version, actors=stale).wait()
        return len(stale)
