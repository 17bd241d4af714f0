"""CPU memory settings of a learner rank (learner.cpu_keep_freed_memory)."""
from __future__ import annotations


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory in the heap for reuse: no mmap'd chunks (those are
    unmapped on free, and a new one faults in fresh zeroed pages) and no trimming of the heap's top.
    Process-wide, for allocations from now on. Returns False where it cannot apply (no glibc)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = libc.mallopt if libc is not None else None
    except (OSError, AttributeError):
        return False
    if mallopt is None or not hasattr(libc, "gnu_get_libc_version"):  # musl and others: not glibc's knobs
        return False
    m_trim_threshold, m_mmap_max = -1, -4  # glibc's malloc.h
    return bool(mallopt(m_mmap_max, 0)) and bool(mallopt(m_trim_threshold, 2**31 - 1))
