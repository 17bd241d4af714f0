"""orchestrator/samples.py: the scored-sample transcript (samples.jsonl) and the verdict fractions."""
import json

from forkrl.common.episode import Episode
from forkrl.orchestrator.data import PromptRow
from forkrl.orchestrator.samples import SampleLog, read_samples, verdict_fractions, verdict_name


def ep(prompt_id: str, sample: int, text: str, verdict: str, reward: float = 0.0) -> Episode:
    e = Episode(0, sample, [1, 2], [3], [-0.1], "stop", text, 7, prompt_id=prompt_id)
    e.reward, e.correct, e.verdict, e.extracted = reward, verdict == "ok", verdict, text[-2:]
    return e


def row(uid: str, question: str, gold: object) -> PromptRow:
    return PromptRow(uid=uid, messages=[{"role": "system", "content": "sys"}, {"role": "user", "content": question}],
                     answer=gold)


def test_verdict_names():
    assert verdict_name("ok") == "ok"
    assert verdict_name("crash: verifier worker died") == "crash"
    assert verdict_name("bad_box: unbalanced braces") == "bad_box"
    assert verdict_name("protocol violation") == "protocol_violation"
    assert verdict_name("data_error: no gold") == "data_error"
    assert verdict_name("") == "none"


def test_verdict_fractions_report_the_usual_verdicts_at_zero():
    eps = [ep("a", 0, "", "ok"), ep("a", 1, "", "unsimplified"), ep("a", 2, "", "unsimplified"),
           ep("a", 3, "", "tests_failed")]
    assert verdict_fractions(eps) == {
        "verdict/bad_box": 0.0, "verdict/crash": 0.0, "verdict/hedge": 0.0, "verdict/no_answer": 0.0,
        "verdict/ok": 0.25, "verdict/tests_failed": 0.25, "verdict/timeout": 0.0, "verdict/unsimplified": 0.5,
        "verdict/wrong_answer": 0.0}
    assert verdict_fractions(eps[:1], prefix="eval/verdict/")["eval/verdict/ok"] == 1.0
    assert verdict_fractions([]) == {}


def test_sample_log_keeps_the_first_sample_of_the_first_prompts(tmp_path):
    rows = [row("r0", "What is 19 + 17?", "36"), row("r1", "What is 2 - 5?", "-3"), row("r2", "What is 1 + 1?", "2")]
    groups = [[ep("r0", 0, "19 + 17", "unsimplified"), ep("r0", 1, "36", "ok", 1.0)],
              [ep("r1", 0, "\\boxed{-3}", "ok", 1.0)],
              [ep("r2", 0, "2", "ok", 1.0)]]
    log = SampleLog(tmp_path / "run" / "samples.jsonl", prompts=2)
    assert log.write(5, "train", rows, groups) == 2
    assert log.write(6, "eval", rows[:1], groups[:1]) == 1
    got = read_samples(tmp_path / "run" / "samples.jsonl")
    assert got == [
        {"step": 5, "kind": "train", "prompt_id": "r0", "sample": 0, "weight_version": 7,
         "prompt": "What is 19 + 17?", "gold": "36", "response": "19 + 17", "finish_reason": "stop",
         "extracted": "17", "verdict": "unsimplified", "reward": 0.0, "correct": False},
        {"step": 5, "kind": "train", "prompt_id": "r1", "sample": 0, "weight_version": 7,
         "prompt": "What is 2 - 5?", "gold": "-3", "response": "\\boxed{-3}", "finish_reason": "stop",
         "extracted": "3}", "verdict": "ok", "reward": 1.0, "correct": True},
        {"step": 6, "kind": "eval", "prompt_id": "r0", "sample": 0, "weight_version": 7,
         "prompt": "What is 19 + 17?", "gold": "36", "response": "19 + 17", "finish_reason": "stop",
         "extracted": "17", "verdict": "unsimplified", "reward": 0.0, "correct": False}]


def test_sample_log_clips_long_text_and_writes_structured_golds(tmp_path):
    log = SampleLog(tmp_path / "s.jsonl", prompts=1)
    log.write(1, "train", [row("c", "code", {"tests": ["assert f() == 1"]})], [[ep("c", 0, "x" * 2500, "tests_failed")]])
    (line,) = read_samples(tmp_path / "s.jsonl")
    assert line["gold"] == json.dumps({"tests": ["assert f() == 1"]})
    assert line["response"] == "x" * 2000 + "... [500 more chars]"


def test_no_prompts_no_file(tmp_path):
    log = SampleLog(tmp_path / "s.jsonl", prompts=0)
    assert log.write(1, "train", [row("a", "q", "1")], [[ep("a", 0, "1", "ok")]]) == 0
    assert not (tmp_path / "s.jsonl").exists()
