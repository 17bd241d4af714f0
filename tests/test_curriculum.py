"""The semantic-entropy curriculum: answers clustered by verifier equivalence order prompts low->high SE."""
import math
from dataclasses import dataclass

from forkrl.orchestrator.curriculum import estimate_order
from forkrl.rewards import answers_equivalent


@dataclass
class Row:
    uid: str


def test_estimate_order_sorts_by_semantic_entropy_with_verifier_equivalence():
    rows = [Row("mixed"), Row("agree"), Row("chaos"), Row("agree_forms")]
    answers = {
        "mixed": ["3", "3", "4", "4"],
        "agree": ["7", "7", "7", "7"],
        "chaos": ["1", "2", "3", None],
        "agree_forms": ["1/2", "0.5", "\\frac{1}{2}", "0.5"],  # one meaning, three spellings
    }
    seen = []

    def sample_answers(batch):
        seen.extend(r.uid for r in batch)
        return [answers[r.uid] for r in batch]

    order, se = estimate_order(rows, sample_answers, answers_equivalent, num_stages=2)
    assert seen == [r.uid for r in rows]
    assert se["agree"] == 0 and se["agree_forms"] == 0
    assert math.isclose(se["mixed"], math.log(2)) and math.isclose(se["chaos"], math.log(4))
    assert set(order[:2]) == {"agree", "agree_forms"} and order[2:] == ["mixed", "chaos"]
    assert sorted(order) == sorted(r.uid for r in rows)
