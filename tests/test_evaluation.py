"""pass@k on the held-out split (orchestrator.evaluation): the unbiased estimator of Chen et al. 2021,
its per-prompt grouping and the metrics dict, with the values worked out by hand; and the eval
section's fields."""
import math

import pytest

from forkrl.orchestrator.config import ConfigError, load_config
from forkrl.orchestrator.evaluation import group_correct, pass_at_k, pass_at_k_metrics, resolve_sample_temperature


@pytest.mark.parametrize("n, c, k, want", [
    (8, 1, 1, 0.125),              # pass@1 = c / n
    (8, 3, 1, 0.375),
    (5, 1, 2, 0.4),                # 1 - C(4,2)/C(5,2) = 1 - 6/10
    (8, 2, 4, 11 / 14),            # 1 - C(6,4)/C(8,4) = 1 - 15/70 = (1 - 4/7)(1 - 4/8) complement
    (4, 0, 2, 0.0),                # nothing correct: 0 whatever k
    (8, 1, 8, 1.0),                # n - c = 7 < k = 8: every 8-subset holds the correct one
    (8, 8, 1, 1.0),
    (1, 0, 1, 0.0),                # one sample: pass@1 is its verdict
    (1, 1, 1, 1.0),
    (200, 1, 100, 0.5),            # 1 - C(199,100)/C(200,100) = 1 - 100/200
    (200, 2, 100, 1 - 9900 / 39800),  # 1 - (100 * 99)/(200 * 199) = 0.75125628...
])
def test_pass_at_k_written_out(n, c, k, want):
    assert pass_at_k(n, c, k) == pytest.approx(want, abs=1e-12)


def test_pass_at_k_is_stable_where_the_binomials_overflow():
    """C(2000, 1000) ~ 2e600 is no float; the product form still answers: 1 - C(1000,1000)/C(2000,1000)
    is 1 to double precision, and with one correct sample of 2000 it is k / n exactly."""
    assert pass_at_k(2000, 1000, 1000) == 1.0
    assert pass_at_k(2000, 1, 1000) == pytest.approx(0.5, abs=1e-12)
    assert math.isfinite(pass_at_k(2000, 3, 700))


@pytest.mark.parametrize("n, c, k", [(1100, 1100, 1100), (2000, 2000, 1031), (2000, 1999, 1500)])
def test_pass_at_k_is_1_without_the_product_when_fewer_than_k_are_wrong(n, c, k):
    """n - c < k: exactly 1. The product form would hold a zero factor (i = k) but its earlier factors
    1 - k/i (i < k) are negative and large, and their running product overflows to inf first: inf * 0
    is nan. The early return is what keeps these finite."""
    assert pass_at_k(n, c, k) == 1.0


@pytest.mark.parametrize("n, c, k, match", [
    (0, 0, 1, "at least one sample"),
    (4, 5, 1, "must lie in"),
    (4, -1, 1, "must lie in"),
    (4, 1, 5, "k=5"),
    (4, 1, 0, "k=0"),
])
def test_pass_at_k_refuses_impossible_counts(n, c, k, match):
    with pytest.raises(ValueError, match=match):
        pass_at_k(n, c, k)


def test_metrics_average_over_prompts():
    """Three prompts of 4 samples with 1, 2 and 0 correct:
    pass@1 = (1/4 + 2/4 + 0)/3 = 0.25;
    pass@2 = (1 - C(3,2)/C(4,2) = 1/2, 1 - C(2,2)/C(4,2) = 5/6, 0)/3 = 4/9;
    pass@4 = (1, 1, 0)/3 = 2/3."""
    correct = [[True, False, False, False], [True, True, False, False], [False] * 4]
    got = pass_at_k_metrics(correct, [1, 2, 4])
    assert got == pytest.approx({"eval/pass@1": 0.25, "eval/pass@2": 4 / 9, "eval/pass@4": 2 / 3}, abs=1e-12)
    assert list(got) == ["eval/pass@1", "eval/pass@2", "eval/pass@4"]


def test_metrics_weight_prompts_equally_and_take_a_prefix():
    """2 samples (1 right) and 8 samples (0 right): pass@1 = (1/2 + 0)/2 = 0.25, not 1/10."""
    got = pass_at_k_metrics([[True, False], [False] * 8], [1], prefix="heldout")
    assert got == {"heldout/pass@1": 0.25}


def test_metrics_refuse_too_few_samples_and_no_prompts():
    with pytest.raises(ValueError, match="k=8"):
        pass_at_k_metrics([[True] * 4], [8])
    with pytest.raises(ValueError, match="at least one prompt"):
        pass_at_k_metrics([], [1])


def test_group_correct_regroups_a_flat_list_in_any_order():
    assert group_correct([1, 0, 1, 0, 2], [True, False, False, False, True], 3) == \
        [[False, False], [True, False], [True]]


@pytest.mark.parametrize("indices, correct, n, match", [
    ([0, 1], [True], 2, "2 prompt indices for 1 verdicts"),
    ([0, 2], [True, True], 2, r"sample 1: prompt index 2 outside \[0, 2\)"),
    ([0, -1], [True, True], 2, r"sample 1: prompt index -1 outside \[0, 2\)"),  # no wrap-around to prompt 1
    ([0, 0], [True, True], 2, "1 prompts have no sample, e.g. \\[1\\]"),
])
def test_group_correct_refuses_bad_input(indices, correct, n, match):
    with pytest.raises(ValueError, match=match):
        group_correct(indices, correct, n)


def test_sample_temperature_defaults_to_the_training_temperature():
    assert resolve_sample_temperature(None, 1.0) == 1.0
    assert resolve_sample_temperature(0.7, 1.0) == 0.7


def test_eval_fields_defaults_and_bounds():
    e = load_config(None).eval
    assert (e.pass_k, e.samples_per_prompt, e.sample_temperature) == ([], 8, None)  # greedy only
    e = load_config(None, ["eval.pass_k=[1, 4]", "eval.samples_per_prompt=4", "eval.sample_temperature=0.5"]).eval
    assert (e.pass_k, e.samples_per_prompt, e.sample_temperature) == ([1, 4], 4, 0.5)
    for bad, field in ((["eval.pass_k=[0]"], "eval.pass_k"), (["eval.samples_per_prompt=0"], "eval.samples_per_prompt"),
                       (["eval.sample_temperature=0"], "eval.sample_temperature")):
        with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
            load_config(None, bad)


def test_problem_rows_pair_each_prompts_greedy_verdict_with_its_sample_counts():
    from types import SimpleNamespace as E

    from forkrl.orchestrator.evaluation import problem_rows

    greedy = [[E(prompt_id="p0", correct=True)], [E(prompt_id="p1", correct=False)]]
    sampled = [[E(prompt_id="p0", correct=c) for c in (True, False, True)],
               [E(prompt_id="p1", correct=c) for c in (False, False, None)]]
    assert problem_rows(7, greedy, sampled) == [
        {"step": 7, "prompt_id": "p0", "greedy": 1, "n": 3, "c": 2},
        {"step": 7, "prompt_id": "p1", "greedy": 0, "n": 3, "c": 0}]
    assert problem_rows(0, greedy) == [{"step": 0, "prompt_id": "p0", "greedy": 1},
                                       {"step": 0, "prompt_id": "p1", "greedy": 0}]
    with pytest.raises(ValueError, match="prompt 0 is 'p0' greedy but 'p1' sampled"):
        problem_rows(1, greedy, sampled[::-1])


def test_problem_rows_append_one_json_line_each_into_a_new_folder(tmp_path):
    from forkrl.orchestrator.evaluation import append_problem_rows

    path = tmp_path / "runs" / "r1" / "eval_problems.jsonl"  # neither folder exists yet
    append_problem_rows(path, [{"step": 0, "prompt_id": "p0", "greedy": 1}])
    append_problem_rows(path, [{"step": 5, "prompt_id": "p0", "greedy": 0}])  # a later eval (or a resume)
    assert path.read_text() == ('{"step": 0, "prompt_id": "p0", "greedy": 1}\n'
                                '{"step": 5, "prompt_id": "p0", "greedy": 0}\n')
