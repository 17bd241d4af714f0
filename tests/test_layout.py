"""orchestrator.layout.resolve_layout (which thread counts each role gets) and common.episode's
grouping of a request's Episodes: pure functions, expected values written out."""
import pytest

from common.episode import Episode, group_by_prompt
from orchestrator.layout import Layout, resolve_layout


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
    with pytest.raises(ValueError, match="prompt_index 2 outside the request's 2 prompts"):
        group_by_prompt([ep(2, 0)], ["a", "b"])
    with pytest.raises(ValueError, match=r"no episodes for prompt\(s\) \['b'\]"):
        group_by_prompt([ep(0, 0)], ["a", "b"])
