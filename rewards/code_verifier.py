"""Code answers: run the response's Python on test cases in the sandbox; reward = fraction of cases passed.

Ground truth (`Sample.answer`) is a dict in one of three shapes:
- HumanEval: {"test": "<defines check(candidate)>", "entry_point": "fn", "prompt": "<signature+docstring>"}
  each top-level statement of check() that contains an assert is one test case;
- assert list: {"tests": ["assert f(1) == 2", ...], "prompt": optional preamble, "entry_point": optional}:
  one case per string;
- stdin/stdout: {"inputs": ["1 2\\n", ...], "outputs": ["3\\n", ...]}: one run per case, output compared
  here after stripping trailing whitespace per line.

The judge is this process, never the sandbox. The policy writes the code we run and will use every
way to score without solving the task (patching builtins, objects whose __eq__ is always True,
redefining the prompt's helpers, patching `math`, mutating inputs, forging records, forking so that
pass lines print twice, ...). So:
- cases of the forms `rewards.code_cases` parses are judged here: only their inputs enter the sandbox,
  and the values that come back are fresh built-ins (`inside_sandbox_harness.encode`, by EXACT type);
- the other cases run inside in a process that never runs the candidate's code (the harness forks the
  candidate off before loading it): its builtins, modules, prompt helpers and globals are the test's
  own, and every call of the candidate deep-copies its arguments across the process boundary. Their
  pass/fail comes from inside and is counted in the reason: "ok (3 unparsed)";
- the candidate never sees the tests: the program text holds only the solution, the tests enter on a
  separate fd that the test process reads after forking the candidate (`inside_sandbox_harness`), so a
  candidate that walks its frames or memory to replay the asserts finds nothing to replay;
- a case whose expected side also comes from the candidate (HumanEval/33's `tuple(candidate(x)) ==
  tuple(sort_third(x))`, sort_third being the prompt's stub, so the candidate's own) is excluded and
  counted: "ok (3 unparsed, 3 self-compared excluded)"; a candidate's exception that would end the
  test's loop (StopIteration) reaches the test as RuntimeError;
- deliberate strictness: a value must be of the EXACT built-in type (a Counter, OrderedDict or iterator
  where the test expects a dict or list fails: equality across types would run the candidate's code in
  the judge), and a case that checks an input mutated in place fails (arguments are copied to the
  candidate's process and its mutations never come back);
- the records are read by `rewards.code_records`, which refuses anything the honest harness would not
  write ("protocol violation"). Rewards are clamped to [0, 1];
- a problem with a case that reads none of the candidate's names cannot be judged (it passes with no
  answer): with `unjudgeable: skip` (the default) it scores 0 with reason "skipped: unjudgeable ..."
  and is not run; the metrics count it as verdict/skipped.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from .code_cases import Case, assert_list_cases, humaneval_cases, self_compared_cases, unjudgeable_cases
from .code_records import ProtocolViolation, records, tally
from .config import CodeRewardConfig
from .sandbox import Limits, run_python
from .types import Sample, Score

_FENCE_RE = re.compile(r"```[^\n`]*\n(.*?)```", re.S)  # any info string: python3, py, Python, none
_HARNESS = Path(__file__).with_name("inside_sandbox_harness.py")


def _defines(code: str, entry: str) -> bool:
    return re.search(rf"def\s+{re.escape(entry)}\s*\(", code) is not None


def extract_code(response: str, entry: str | None = None) -> str:
    """The last fenced code block that defines `entry` (a solution followed by a usage example), else
    the last fenced block, else the whole response (models often answer with bare code). CRLF line
    endings are read as LF."""
    response = response.replace("\r\n", "\n")
    blocks = _FENCE_RE.findall(response)
    defining = [b for b in blocks if entry and _defines(b, entry)]
    return (defining or blocks or [response])[-1]


def _harness_source() -> str:
    """The harness enters the sandbox as program text (the sandbox sees no forkrl file to import)."""
    return _HARNESS.read_text()


def _limits(cfg: CodeRewardConfig, wall_s: float, harness: bool) -> Limits:
    """The sandbox's limits; the assert harness's own test process does not count against the program's
    `max_processes`."""
    return Limits(wall_s=wall_s, cpu_s=cfg.cpu_s, memory_bytes=cfg.memory_mb << 20,
                  max_processes=cfg.max_processes + harness, max_output_bytes=cfg.max_output_bytes,
                  max_open_files=cfg.max_open_files, site_packages=cfg.site_packages, isolation=cfg.isolation)


def _cases(ans: dict) -> tuple[str, list[str], list[Case]]:
    prompt, entry = ans.get("prompt") or "", ans.get("entry_point")
    if "test" in ans:
        return humaneval_cases(ans["test"], prompt, entry)
    return assert_list_cases(ans["tests"], prompt, entry)


def _score_asserts(sample: Sample, code: str, cfg: CodeRewardConfig, wall_s: float) -> Score:
    ans = sample.answer
    prompt, entry = ans.get("prompt") or "", ans.get("entry_point")
    setup, proxies, cases = _cases(ans)
    if not any(c.is_case for c in cases):
        raise ValueError("no test cases")
    selfish = self_compared_cases(cases, proxies)
    cases = [c for c in cases if c not in selfish]
    n = sum(c.is_case for c in cases)
    if n == 0:
        return Score(sample.uid, 0.0, False, f"skipped: unjudgeable (all {len(selfish)} cases compare the "
                                             "candidate with itself)")
    blind = unjudgeable_cases(cases, proxies)
    if blind and cfg.unjudgeable == "skip":
        return Score(sample.uid, 0.0, False, f"skipped: unjudgeable ({len(blind)} of {n} cases read no candidate name)")
    # a response that restates the function is used whole; a bare body continues the prompt's def
    if entry and _defines(code, entry):
        solution = prompt + "\n" + code
    else:
        solution = prompt + code
    # the tests enter on their own fd, read only after the candidate's process is forked: never in its memory
    tests = {"setup": setup, "proxies": proxies, "entry": entry if "test" in ans else None,
             "items": [c.item() for c in cases], "max_record": cfg.max_record_bytes}
    res = run_python(f"{_harness_source()}\n\nrun({solution!r})\n", "", _limits(cfg, wall_s, True), channel=True,
                     private_input=repr(tests).encode())
    try:
        passed, done, load_error = tally(records(res.channel, cfg.max_record_bytes), cases)
    except ProtocolViolation:
        return Score(sample.uid, 0.0, False, "protocol violation")
    if load_error is not None:
        reason = f"load_error {load_error}"
    elif done:
        reason = "ok" if passed == n else "tests_failed"
    else:
        reason = res.status if res.status != "ok" else "no_verdict"  # died mid-run: passes so far count
    notes = [f"{k} {what}" for k, what in ((sum(c.is_case and c.judge is None for c in cases), "unparsed"),
                                            (len(selfish), "self-compared excluded")) if k]
    if notes:
        reason += f" ({', '.join(notes)})"
    return Score(sample.uid, min(1.0, max(0.0, passed / n)), passed == n and done, reason)


def _score_stdio(sample: Sample, code: str, cfg: CodeRewardConfig, wall_s: float) -> Score:
    ins, outs = sample.answer["inputs"], sample.answer["outputs"]
    if not ins or len(ins) != len(outs):
        raise ValueError("inputs/outputs must be non-empty and of equal length")
    deadline, passed, reason = time.monotonic() + wall_s, 0, "ok"
    for stdin, want in zip(ins, outs):
        left = deadline - time.monotonic()
        if left <= 0:
            reason = "timeout"
            break
        res = run_python(code, stdin, _limits(cfg, left, False))
        if res.status == "ok" and _same_output(res.stdout, want):
            passed += 1
        elif reason == "ok":
            reason = "tests_failed" if res.status == "ok" else res.status
    n = len(ins)
    return Score(sample.uid, passed / n, passed == n, reason)


def _same_output(got: str, want: str) -> bool:
    norm = lambda s: [line.rstrip() for line in s.strip().splitlines()]  # noqa: E731
    return norm(got) == norm(want)


def score_code(sample: Sample, cfg: CodeRewardConfig, wall_s: float) -> Score:
    """Pass fraction of the sample's tests; `wall_s` bounds all of the sample's runs together."""
    if not isinstance(sample.answer, dict):
        raise TypeError(f"code answer must be a dict, got {type(sample.answer).__name__}")
    code = extract_code(sample.response or "", sample.answer.get("entry_point"))
    if "inputs" in sample.answer:
        return _score_stdio(sample, code, cfg, wall_s)
    return _score_asserts(sample, code, cfg, wall_s)
