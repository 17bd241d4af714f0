"""orchestrator.layout.resolve_layout (which thread counts each role gets) and common.episode's
grouping of a request's Episodes: pure functions, expected values written out."""
import dataclasses

import pytest

from forkrl.common.episode import Episode, group_by_prompt
from forkrl.orchestrator.layout import Layout, resolve_layout


@pytest.mark.parametrize("layout,mode,on_gpu,joins,expected", [
    ("auto", "sync", False, False, Layout("colocated", 8, 8)),
    ("auto", "async", False, False, Layout("split", None, None)),
    ("auto", "sync", True, False, Layout("split", None, None)),  # GPU colocation is not built
    ("auto", "sync", False, True, Layout("split", None, None)),  # roles may sit on other nodes
    ("colocated", "sync", False, True, Layout("colocated", 8, 8)),  # asked for explicitly
    ("split", "sync", False, False, Layout("split", None, None)),
])
def test_resolve_layout(layout, mode, on_gpu, joins, expected):
    assert resolve_layout(layout, mode, on_gpu=on_gpu, joins_cluster=joins, node_cpus=8) == expected


@pytest.mark.parametrize("layout,mode,joins,alive,expected", [
    ("auto", "sync", False, 1, Layout("colocated", 8, 8)),  # private one-node Ray
    ("auto", "sync", False, 2, Layout("split", None, None)),  # the caller joined a 2-node cluster itself
    ("auto", "sync", False, 5, Layout("split", None, None)),
    ("auto", "sync", True, 1, Layout("split", None, None)),  # joined by address: one node now, maybe more later
    ("auto", "async", False, 2, Layout("split", None, None)),
    ("colocated", "sync", False, 3, Layout("colocated", 8, 8)),  # asked for explicitly
    ("split", "sync", False, 1, Layout("split", None, None)),
])
def test_auto_layout_counts_the_alive_nodes(layout, mode, joins, alive, expected):
    assert resolve_layout(layout, mode, on_gpu=False, joins_cluster=joins, node_cpus=8,
                          alive_nodes=alive) == expected


def test_no_alive_node_is_refused():
    with pytest.raises(ValueError, match="alive_nodes=0: a connected Ray has at least the driver's node"):
        resolve_layout("auto", "sync", on_gpu=False, joins_cluster=False, node_cpus=8, alive_nodes=0)


def test_a_resolved_layout_is_a_value():
    """Frozen: resolved once and logged, no phase can change it afterwards; hashable and compared by value."""
    layout = resolve_layout("auto", "sync", on_gpu=False, joins_cluster=False, node_cpus=4)
    with pytest.raises(dataclasses.FrozenInstanceError):
        layout.rollout_threads = 1
    assert layout == Layout("colocated", 4, 4) and {layout: "x"}[Layout("colocated", 4, 4)] == "x"


def test_colocated_async_and_unknown_layouts_are_refused():
    with pytest.raises(ValueError, match="needs trainer.mode='sync'"):
        resolve_layout("colocated", "async", on_gpu=False, joins_cluster=False, node_cpus=8)
    with pytest.raises(ValueError, match="unknown trainer.layout 'mixed'"):
        resolve_layout("mixed", "sync", on_gpu=False, joins_cluster=False, node_cpus=8)


def ep(prompt_index, sample_index):
    return Episode(prompt_index, sample_index, [1], [2], [-1.0], "stop", "", 0)


def test_group_by_prompt_orders_stamps_and_checks():
    groups = group_by_prompt([ep(1, 1), ep(0, 0), ep(1, 0), ep(0, 1)], ["a", "b"])
    assert [[(e.prompt_id, e.sample_index) for e in g] for g in groups] == [[("a", 0), ("a", 1)],
                                                                             [("b", 0), ("b", 1)]]
    assert groups[1][0].uid == "b/0" and not groups[0][0].truncated
    with pytest.raises(ValueError, match=r"episode sample_index 0 has prompt_index 2, outside the "
                                         r"request's 2 prompts \[0, 2\)"):
        group_by_prompt([ep(2, 0)], ["a", "b"])
    with pytest.raises(ValueError, match=r"no episodes for prompt\(s\) \['b'\]"):
        group_by_prompt([ep(0, 0)], ["a", "b"])


def test_group_by_prompt_refuses_a_negative_prompt_index():
    """-1 must not wrap around to the last prompt ("b"): that Episode would be verified against b's
    answer and trained in b's group. The bad Episode is left unstamped."""
    episodes = [ep(0, 0), ep(1, 0), ep(-1, 1)]
    with pytest.raises(ValueError, match=r"episode sample_index 1 has prompt_index -1, outside the "
                                         r"request's 2 prompts \[0, 2\)"):
        group_by_prompt(episodes, ["a", "b"])
    assert episodes[2].prompt_id == ""
