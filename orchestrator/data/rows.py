"""One prompt as the trainer sees it (``PromptRow``), how a prompt value becomes chat messages, and
the text two prompts are compared by."""

from __future__ import annotations

import dataclasses
import unicodedata
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from forkrl.orchestrator.data.config import DataBase


class DataError(ValueError):
    """A data source cannot be used at all (missing file, no usable rows); the message says why."""


@dataclasses.dataclass
class PromptRow:
    """One prompt: chat messages (the driver applies the chat template to them) and the reference
    answer for the verifier."""

    uid: str
    messages: list[dict[str, str]]
    answer: str
    task: str = "math"
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)


def normalised_prompt(messages: Sequence[dict[str, str]]) -> str:
    """The text two prompts are compared by when deduping and holding out.

    Unicode NFKC form, case-folded, whitespace runs collapsed: "What is 2+3?" and " what  IS 2+3? "
    are one problem. Spacing *inside* tokens is kept ("2+3" is not "2 + 3"), since removing all
    whitespace would merge prompts that differ ("1 2" vs "12").
    """
    return "\n".join(
        f"{m['role']}: " + " ".join(unicodedata.normalize("NFKC", m["content"]).casefold().split())
        for m in messages
    )


_ROLES = ("system", "user", "assistant")


def messages(prompt: Any, cfg: DataBase) -> list[dict[str, str]] | str:
    """Chat messages for a prompt value (a string through ``cfg.prompt_template``, or a list of
    {role, content} messages), with ``cfg.system_prompt`` first; or the reason the value is unusable."""
    if isinstance(prompt, str):
        if not prompt.strip():
            return "empty prompt"
        msgs = [{"role": "user", "content": cfg.prompt_template.replace("{prompt}", prompt)}]
    elif isinstance(prompt, (list, tuple)):
        if not prompt:
            return "empty prompt"
        msgs = []
        for m in prompt:
            if not (isinstance(m, dict) and m.get("role") in _ROLES
                    and isinstance(m.get("content"), str)):
                return "bad chat message in prompt"
            msgs.append({"role": m["role"], "content": m["content"]})
        if msgs[-1]["role"] == "assistant" or not any(m["role"] == "user" for m in msgs):
            return "bad chat message in prompt"
    else:
        return f"prompt is {type(prompt).__name__}, expected str or chat messages"
    if cfg.system_prompt is not None and msgs[0]["role"] != "system":
        msgs.insert(0, {"role": "system", "content": cfg.system_prompt})
    return msgs
