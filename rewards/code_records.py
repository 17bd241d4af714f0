"""The harness's records, read here in the parent: only what the honest harness would write is accepted.

Each case counts once: records must come in case order, one per case, then "done". A copy of the
harness forked by the solution stays silent; a duplicate, unknown or out-of-order record, a line
longer than the record cap, or garbage (what a forged or forked writer produces) is a protocol
violation, and the sample scores 0. The cap comes before parsing: a forged record of ~31k
hash-colliding integers would cost seconds to build as a set; one within the cap costs milliseconds.
"""

from __future__ import annotations

import ast
from typing import Any

from .code_cases import Case
from .inside_sandbox_harness import decode


class ProtocolViolation(Exception):
    pass


def records(raw: bytes, max_record: int) -> list[tuple]:
    """The complete lines of `raw` as tuples; a line over `max_record` bytes is refused unparsed."""
    lines = raw.split(b"\n")
    lines.pop()  # after the last newline: nothing, or a record cut short by the output cap or a kill
    out = []
    for line in lines:
        if len(line) + 1 > max_record:  # the honest harness counts the newline in its cap
            raise ProtocolViolation
        try:
            rec = ast.literal_eval(line.decode("utf-8"))
        except Exception:
            raise ProtocolViolation from None
        if type(rec) is not tuple or not rec:
            raise ProtocolViolation
        out.append(rec)
    return out


def _is_index(x: Any, expected: int, n: int) -> bool:
    """The next case's index, as a real int (True is not 1 here)."""
    return type(x) is int and x == expected < n


def tally(recs: list[tuple], cases: list[Case]) -> tuple[int, bool, str | None]:
    """(cases passed, saw "done", load error); raises ProtocolViolation on anything the honest
    harness would not have written: records out of order, twice, unknown, or after the end."""
    judged = [c for c in cases if c.is_case]
    seen = passed = 0
    done, load_error = False, None
    for rec in recs:
        kind = rec[0]
        if done or load_error is not None:
            raise ProtocolViolation
        if kind == "done" and len(rec) == 1 and seen == len(judged):
            done = True
        elif kind == "load_error" and len(rec) == 2 and type(rec[1]) is str and seen == 0:
            load_error = rec[1][:60]
        elif kind in ("value", "raised", "pass", "fail") and len(rec) >= 2 and _is_index(rec[1], seen, len(judged)):
            case = judged[seen]
            if kind == "value" and len(rec) == 3 and case.judge is not None:
                try:
                    value = decode(rec[2])
                except Exception:  # the honest harness never writes a malformed value
                    raise ProtocolViolation from None
                passed += case.judge(value)
            elif kind == "raised" and len(rec) == 2 and case.judge is not None:
                pass
            elif kind in ("pass", "fail") and len(rec) == 2 and case.judge is None:
                passed += kind == "pass"
            else:
                raise ProtocolViolation
            seen += 1
        else:
            raise ProtocolViolation
    return passed, done, load_error
