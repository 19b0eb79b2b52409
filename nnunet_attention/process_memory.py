"""The resident memory of this process, for the benchmark's CPU peak (Linux ``/proc``; elsewhere what
``getrusage`` gives)."""

from __future__ import annotations

import ctypes
import ctypes.util
import resource
import sys
from pathlib import Path

#: glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
#: freed blocks up to this size stay in the process (glibc's default returns those above 128 KiB to the kernel)
KEPT_BLOCK_BYTES = 2**30


def resident_mib() -> float:
    """The process' resident memory now (Linux ``/proc``; elsewhere its peak so far, the best available)."""
    statm = Path("/proc/self/statm")
    if statm.exists():
        return int(statm.read_text().split()[1]) * resource.getpagesize() / 2**20
    return peak_resident_mib()


def reset_peak_resident() -> None:
    """Restart the process' resident high-water mark (Linux: ``/proc/self/clear_refs``), so that the peak read
    next is the peak since now. Without it Linux's peak is the largest since the process started, including what
    its parent held when it was forked: ``getrusage``'s ``ru_maxrss`` survives ``exec``, so a measuring process
    spawned by a large one (a test run) reports the parent's size."""
    clear_refs = Path("/proc/self/clear_refs")
    if clear_refs.exists():
        clear_refs.write_text("5")


def peak_resident_mib() -> float:
    """The resident high-water mark since :func:`reset_peak_resident` (Linux ``VmHWM``); elsewhere
    ``ru_maxrss``, the peak of the whole process."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def keep_freed_memory() -> bool:
    """Have glibc keep the memory a CPU training step frees for the next step, as a long training run reaches
    anyway, instead of returning each large block to the kernel and faulting it in again: on a virtual machine
    those page faults made a step's time vary by 40-80% from one step to the next (7-13% with it), and charged the
    networks that allocate most for the kernel's work rather than their arithmetic. The resident peak stays the
    step's working set (2-6% higher on the ACDC 2d preset: blocks kept apart). Returns whether it applied (False
    without glibc)."""
    library = ctypes.util.find_library("c")
    if not sys.platform.startswith("linux") or library is None:
        return False
    libc = ctypes.CDLL(library)
    if not hasattr(libc, "mallopt"):  # musl
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, KEPT_BLOCK_BYTES)) and bool(libc.mallopt(_M_TRIM_THRESHOLD,
                                                                                         KEPT_BLOCK_BYTES))
