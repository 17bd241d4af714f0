"""Semantic entropy and the SENT curriculum (docs/ALGORITHMS.md §4)."""
import math

import pytest

from forkrl.orchestrator.semantic_entropy import curriculum_order, semantic_entropy

eq = lambda a, b: a.strip() == b.strip()


def test_identical_answers_have_zero_se():
    assert semantic_entropy(["42"] * 8, eq) == 0.0
    assert semantic_entropy(["42", " 42", "42 "], eq) == 0.0  # equivalence, not string identity


def test_m_distinct_answers_have_log_m():
    assert semantic_entropy([str(i) for i in range(8)], eq) == pytest.approx(math.log(8))


def test_mixed_clusters():
    se = semantic_entropy(["1", "1", "1", "2"], eq)
    assert se == pytest.approx(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))


def test_unparsable_answers_are_singletons():
    assert semantic_entropy([None, None], eq) == pytest.approx(math.log(2))
    assert semantic_entropy(["1", None, "1", None], eq) == pytest.approx(-(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25)))
    with pytest.raises(ValueError):
        semantic_entropy([], eq)


def test_curriculum_nondecreasing_and_partition():
    se = {f"p{i}": v for i, v in enumerate([0.9, 0.0, 2.1, 0.5, 0.5, 1.3, 0.0])}
    for k in (1, 2, 3):
        stages = curriculum_order(se, num_stages=k)
        assert len(stages) == k
        flat = [u for s in stages for u in s]
        assert sorted(flat) == sorted(se) and len(flat) == len(set(flat))
        vals = [se[u] for u in flat]
        assert vals == sorted(vals)
    first, second = curriculum_order(se, 2)
    assert abs(len(first) - len(second)) <= 1
    assert max(se[u] for u in first) <= min(se[u] for u in second)


def test_curriculum_rejects_zero_stages():
    with pytest.raises(ValueError):
        curriculum_order({"a": 0.0}, 0)
