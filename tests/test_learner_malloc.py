"""learner.cpu_keep_freed_memory: freed memory stays in the heap, so reallocating a step's large
temporaries faults no pages. Each case runs in a fresh interpreter (mallopt is process-wide)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import json, resource, sys
import torch
import forkrl.learner.worker  # what a rank has imported when LearnerWorker applies the setting
if {keep}:
    from forkrl.learner.cpu_memory import keep_freed_memory
    assert keep_freed_memory()
faults = []
for _ in range(12):  # a 64 MiB temporary, allocated, written and freed, as a step does
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t = torch.empty(16 * 2**20).fill_(1.0)
    del t
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps(faults))
"""


def _faults(keep: bool) -> list[int]:
    out = subprocess.run([sys.executable, "-c", PROBE.format(root=str(ROOT), keep=keep)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_reallocating_a_large_temporary_faults_no_pages_once_freed_memory_is_kept():
    kept = _faults(keep=True)
    # 64 MiB = 16384 pages of 4 KiB: the first allocation faults them in; once the heap has settled
    # (measured: up to four fault-ins, as small objects land in the freed block and the next one
    # moves past them), every reallocation reuses them.
    assert kept[0] > 10_000
    assert all(f < 500 for f in kept[-4:]), kept


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_without_it_every_reallocation_faults_its_pages_again():
    # What the setting is for: glibc serves a 64 MiB block by mmap and unmaps it on free.
    default = _faults(keep=False)
    assert all(f > 10_000 for f in default), default
