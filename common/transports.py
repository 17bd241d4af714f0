"""The weight transports there are, by the name `learner.weight_sync.transport` gives them."""
from __future__ import annotations

from forkrl.common.transport import Transport
from forkrl.common.transport_collective import Collective
from forkrl.common.transport_object_store import ObjectStore

TRANSPORTS: dict[str, type[Transport]] = {t.name: t for t in (Collective, ObjectStore)}
FALLBACK = ObjectStore
"""Needs no rendezvous: what a push falls back to when another transport fails, and what a fresh
engine receives with."""


def transport_class(name: str) -> type[Transport]:
    if name not in TRANSPORTS:
        raise ValueError(f"unknown weight transport {name!r} (known: {', '.join(sorted(TRANSPORTS))})")
    return TRANSPORTS[name]
