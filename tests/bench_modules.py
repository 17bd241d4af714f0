"""Loads a bench/ script as a module for its tests, by file path: bench/ is not a package (its scripts
run as `python bench/<name>.py`, with bench/ as their first import path), and tests import the
installed forkrl, so nothing here touches sys.path. A bench module's sibling imports (benchlib,
bench_learner) are loaded the same way first."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parents[1] / "bench"


def load_bench(name: str, *siblings: str) -> ModuleType:
    for mod in (*siblings, name):
        if mod not in sys.modules:
            spec = importlib.util.spec_from_file_location(mod, BENCH / f"{mod}.py")
            module = importlib.util.module_from_spec(spec)
            sys.modules[mod] = module
            spec.loader.exec_module(module)
    return sys.modules[name]
