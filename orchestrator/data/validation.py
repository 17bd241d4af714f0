"""Row validation for file sources: each record becomes a ``PromptRow`` or a counted, numbered skip.

Bad rows (missing/empty/non-finite prompt or answer, wrong types, unparsable lines, duplicate uids,
duplicate prompts, prompts of the eval split) are skipped and counted in the source's
``LoadReport`` with their 1-based row number and reason, so one log line says what was dropped.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from forkrl.orchestrator.data.report import LoadReport
from forkrl.orchestrator.data.rows import PromptRow, messages, normalised_prompt

if TYPE_CHECKING:
    from forkrl.orchestrator.data.config import FileData

_NON_FINITE = {"nan", "inf", "infinity"}


def answer(value: Any) -> str | tuple[str, str]:
    """The answer as a string; a (reason, detail) pair says why the row is skipped.

    NaN and infinities are refused as floats (JSON's NaN/Infinity literals parse to them) and as
    the strings Python's float() reads as such ("nan", "-inf", "Infinity"): no model output can be
    verified against them. LaTeX answers such as "\\infty" are kept. None never reaches here as
    a value to stringify: callers report a missing answer first.
    """
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return (f"answer is {type(value).__name__}, expected str or number", "")
    s = str(value).strip()  # str(float("nan")) == "nan": one check covers floats and strings
    if not s:
        return ("empty answer", "")
    if s.lstrip("+-").casefold() in _NON_FINITE:
        return ("answer is not finite", repr(value))
    return s


def rows_from_records(
    records: Iterable[tuple[int, Any]], cfg: FileData, split: str, report: LoadReport,
    exclude: dict[str, int] | None = None,
) -> list[PromptRow]:
    """Validate records (row number, object or an exception from parsing) into PromptRows.

    Rows repeating an earlier row's normalised prompt are skipped ("duplicate prompt"), so a split
    holds distinct problems; rows whose prompt is in ``exclude`` (normalised prompt -> row number
    in the eval source) are skipped as "prompt in eval split", which keeps eval held out.
    """
    out: list[PromptRow] = []
    seen: set[str] = set()
    first_row: dict[str, int] = {}
    pk, ak = cfg.prompt_key, cfg.answer_key
    for row_no, rec in records:
        if isinstance(rec, Exception):
            report.skip(row_no, "unparsable line", str(rec)[:80])
            continue
        if not isinstance(rec, dict):
            report.skip(row_no, "row is not an object", type(rec).__name__)
            continue
        if rec.get(pk) is None:
            report.skip(row_no, f"missing {pk!r}")
            continue
        if rec.get(ak) is None:
            report.skip(row_no, f"missing {ak!r}")
            continue
        msgs = messages(rec[pk], cfg)
        if isinstance(msgs, str):
            report.skip(row_no, msgs)
            continue
        ans = answer(rec[ak])
        if isinstance(ans, tuple):
            report.skip(row_no, *ans)
            continue
        task = cfg.task
        if cfg.task_key is not None and rec.get(cfg.task_key) is not None:
            task = rec[cfg.task_key]
            if not isinstance(task, str) or not task.strip():
                report.skip(row_no, f"bad {cfg.task_key!r}", repr(task)[:40])
                continue
        if cfg.uid_key is not None:
            uid = rec.get(cfg.uid_key)
            if not isinstance(uid, (str, int)) or isinstance(uid, bool) or str(uid) == "":
                report.skip(row_no, f"missing {cfg.uid_key!r}")
                continue
            uid = str(uid)
        else:
            uid = f"{split}-{row_no}"
        if uid in seen:
            report.skip(row_no, "duplicate uid", uid)
            continue
        key = normalised_prompt(msgs)
        if key in first_row:
            report.skip(row_no, "duplicate prompt", f"as row {first_row[key]}")
            continue
        if exclude and key in exclude:
            report.skip(row_no, "prompt in eval split", f"eval row {exclude[key]}")
            continue
        seen.add(uid)
        first_row[key] = row_no
        out.append(PromptRow(uid=uid, messages=msgs, answer=ans, task=task, meta={"row": row_no}))
        report.num_ok += 1
    return out
