"""common.transports and common.transport_object_store: the transports the config can name are the
ones there are, and the object store's link needs no rendezvous and hands its flats over as the payload."""
import typing

import pytest
import torch

from forkrl.common.transport_object_store import ObjectStore, ObjectStoreReceiver
from forkrl.common.transports import FALLBACK, TRANSPORTS, transport_class
from forkrl.learner.config import WeightSyncConfig

PLAN = [[("a", "float32", (2, 3)), ("b", "float32", (4,))], [("c", "bfloat16", (3,))]]


def test_the_config_names_exactly_the_registered_transports():
    names = typing.get_args(WeightSyncConfig.model_fields["transport"].annotation)
    assert sorted(names) == sorted(TRANSPORTS) == ["collective", "object_store"]
    assert transport_class("object_store") is ObjectStore is FALLBACK
    with pytest.raises(ValueError, match="unknown weight transport 'ipc' \\(known: collective, object_store\\)"):
        transport_class("ipc")


def test_the_object_store_link_asks_for_no_address_and_hands_over_a_payload():
    def no_address():
        raise AssertionError("the object store needs no rendezvous")

    link = ObjectStore.setup(address=no_address, receivers=4, backend="nccl", timeout_s=1.0)
    assert link == ObjectStore() and link.name == "object_store" and link.streams is False
    assert isinstance(link.receiver(3, "cpu"), ObjectStoreReceiver)


def test_the_object_store_receiver_unpacks_the_payload_in_plan_order():
    rx = ObjectStore().receiver(1, "cpu")
    got = dict(rx.receive(PLAN, [torch.arange(10.0), torch.tensor([1.0, 2.0, 3.0]).to(torch.bfloat16)]))
    assert got["a"].tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]] and got["b"].tolist() == [6, 7, 8, 9]
    assert got["c"].dtype == torch.bfloat16 and got["c"].tolist() == [1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="plan has 2 buckets, received 1 flats"):
        list(rx.receive(PLAN, [torch.arange(10.0)]))
