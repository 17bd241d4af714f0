"""Atomic checkpoints: everything is written into `step_N.tmp/`, then one rename publishes it.

A crash mid-write leaves only a `.tmp` dir, which `latest()` ignores and the next save removes, so
`--resume` always finds a complete checkpoint. Layout of `checkpoints/step_000010/`:
  learner/     DeepSpeed checkpoint of every rank (model, optimizer, scheduler)
  state.json   step, weight version, data-stream position, RNG states, eval history
"""
from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

STATE = "state.json"


def _name(step: int) -> str:
    return f"step_{step:06d}"


def capture_rng() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state()[1].tolist(),
            "numpy_pos": int(np.random.get_state()[2]), "torch": torch.get_rng_state().tolist()}


def restore_rng(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    np.random.set_state(("MT19937", np.array(state["numpy"], dtype=np.uint32), state["numpy_pos"], 0, 0.0))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))


def save(root: Path, step: int, state: dict[str, Any], write_learner: Callable[[Path], None],
         keep_last: int = 2) -> Path:
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / _name(step)
    tmp = root / (_name(step) + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    write_learner(tmp / "learner")
    (tmp / STATE).write_text(json.dumps(state))
    if final.exists():  # re-saving the same step after a resume: replace it whole
        shutil.rmtree(final)
    tmp.rename(final)
    for old in sorted(p for p in root.glob("step_*") if p.is_dir() and not p.name.endswith(".tmp"))[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest(root: Path) -> Path | None:
    done = sorted(p for p in Path(root).glob("step_*")
                  if p.is_dir() and not p.name.endswith(".tmp") and (p / STATE).exists())
    return done[-1] if done else None


def load_state(ckpt: Path) -> dict[str, Any]:
    return json.loads((Path(ckpt) / STATE).read_text())
