"""The process's CPU policy, applied once at start by every entry point that may run a
model (CLI train/eval/try/export, the window, torchrun ranks): the C allocator's
settings and torch's thread count. Qt-free and torch-free at import.

Allocator. glibc serves a request of 128 KiB or more with a fresh mmap and returns it
with munmap on free (the threshold then rises with what was freed, up to 32 MiB), and
gives the top of its heap back to the kernel (brk) past twice that threshold free. A
training step allocates and frees activations of several MiB ([B, T, H] floats: 64 x
128 x 256 x 4 B = 8 MiB per char-LM layer output), so every step maps memory afresh and
page-faults on each page: a char-LM step on 2 cores took about 90,000 faults and a third
of the process's CPU time in the kernel (issue 22; bench/cpu_policy.py). Told to keep
freed memory (mmap only from 32 MiB, trim only past 2 GiB free, grow the heap 512 MiB at
a time), glibc reuses the pages: no faults after the first steps, 21% less wall time for
the whole command. The price: resident memory stays at about one step's peak while the
process lives (char-LM: +350 MB). Set through mallopt() (ctypes, no dependency); a no-op
on other C libraries and platforms; WORKBENCH_ALLOCATOR=default turns it off; MALLOC_*_
environment variables the user set win (glibc read them at start; mallopt would
override them).

Threads. ``default_threads()``: one fewer than the cores this process may use, at least
one. A thread team that shares its cores with another busy process waits for its slowest
member at every parallel op: with a busy process beside it, `workbench eval` of the adding
task took 20-27 s on torch's default (2 threads of 2 cores) against 0.24 s on one (issue
15; bench/eval_threads.py). WORKBENCH_THREADS=N (or --threads) overrides it for eval and
try; training takes train.num_threads (0: torch's default, one per core).
"""
from __future__ import annotations

import ctypes
import os
import sys

ENV_THREADS = "WORKBENCH_THREADS"  # torch CPU threads for every command (a positive integer)

# ---- allocator: begin (copied verbatim into the exported standalone script; stdlib only)
ENV_ALLOCATOR = "WORKBENCH_ALLOCATOR"  # "default": leave the C allocator as it is
# glibc's mallopt() parameters (malloc.h) and the values set; the environment variable that
# sets the same parameter at start (glibc's names), which wins when the user set it.
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD, M_MMAP_MAX = -1, -2, -3, -4
MALLOPT = (
    # no mmap at all: glibc refuses a threshold past 32 MiB, and a char-LM step on one thread
    # maps and unmaps a 125 MiB oneDNN workspace (38,000 faults a step); from the heap it
    # is reused. (glibc still maps when the heap cannot grow.)
    ("mmap_max", M_MMAP_MAX, 0, "MALLOC_MMAP_MAX_"),
    ("mmap_threshold", M_MMAP_THRESHOLD, 32 * 1024 * 1024, "MALLOC_MMAP_THRESHOLD_"),  # glibc's maximum on 64-bit
    ("trim_threshold", M_TRIM_THRESHOLD, 2**31 - 1, "MALLOC_TRIM_THRESHOLD_"),  # mallopt takes a C int
    ("top_pad", M_TOP_PAD, 512 * 1024 * 1024, "MALLOC_TOP_PAD_"),
)


def _glibc():
    """glibc's handle, or None on another C library or platform."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)  # the C library this process already runs on
        version = libc.gnu_get_libc_version  # only glibc has it (not musl)
    except (OSError, AttributeError):
        return None
    version.restype = ctypes.c_char_p
    libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    libc.mallopt.restype = ctypes.c_int
    return libc


def set_allocator() -> dict:
    """Apply the allocator settings; returns what was done (for the start record)."""
    if os.environ.get(ENV_ALLOCATOR, "").strip().lower() == "default":
        return {"policy": "default", "why": f"{ENV_ALLOCATOR}=default"}
    libc = _glibc()
    if libc is None:
        return {"policy": "default", "why": f"not glibc ({sys.platform})"}
    settings: dict = {}
    for name, param, value, env in MALLOPT:
        if os.environ.get(env, "").strip():
            settings[name] = f"{env}={os.environ[env].strip()}"  # the user's own, read by glibc at start
        elif libc.mallopt(param, value) == 1:
            settings[name] = value
        else:
            settings[name] = "refused"
    return {"policy": "keep freed memory", "libc": "glibc " + libc.gnu_get_libc_version().decode(), **settings}
# ---- allocator: end


_applied: dict | None = None  # what apply() did, once per process


def cpu_cores() -> int:
    """The cores this process may run on (taskset, cgroups' cpusets), else the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_threads() -> int:
    """Torch CPU threads when nothing says otherwise: WORKBENCH_THREADS, else the cores
    less one, at least one."""
    value = os.environ.get(ENV_THREADS, "").strip()
    if value:
        try:
            n = int(value)
        except ValueError:
            n = 0
        if n < 1:
            from workbench.spec import SpecError

            raise SpecError(ENV_THREADS, f"must be a whole number, 1 or more (it is {value!r})")
        return n
    return max(1, cpu_cores() - 1)


# How much lower the window's trainer thread runs than the interface (a nice increment,
# 0-19; its torch worker threads, started by it, inherit it). Off by default: at nice +10
# on a machine loaded by other processes the trainer got almost no CPU (0 steps in 15 s
# beside a load average of 13; bench/gui_latency.py --threads 2 --nice 10), since every
# other process then outranks it. WORKBENCH_TRAINER_NICE=N turns it on, e.g. with
# train.num_threads set to every core on an otherwise idle desktop.
ENV_TRAINER_NICE = "WORKBENCH_TRAINER_NICE"
TRAINER_NICE = 0


def lower_this_thread(increment: int | None = None) -> int:
    """Lower the calling thread's scheduling priority (Linux: nice is per thread) by
    ``increment`` (WORKBENCH_TRAINER_NICE, else TRAINER_NICE); the threads it starts afterwards, such as
    torch's OpenMP team on its first parallel op, inherit it. The window's trainer calls it,
    so that training may use every core while the GUI thread, at the normal priority,
    still gets a core the moment it has work. Returns the thread's nice value after it,
    or 0 where it cannot be changed (other systems)."""
    if increment is None:
        value = os.environ.get(ENV_TRAINER_NICE, "").strip()
        increment = int(value) if value.isdigit() else TRAINER_NICE
    if not sys.platform.startswith("linux") or increment <= 0:
        return 0
    import threading

    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + increment))
        return os.getpriority(os.PRIO_PROCESS, tid)
    except (AttributeError, OSError):
        return 0


def apply(entry: str, threads: int | None = None) -> dict:
    """The process policy, once: the allocator (before the first large allocation, so call
    it first thing) and, when ``threads`` is given, torch's thread count (imports torch).
    ``entry`` names the entry point that applied it. Returns the description that goes
    into the start record; later calls return the same and change nothing but the threads
    when asked."""
    global _applied
    if _applied is None:
        world = os.environ.get("WORLD_SIZE", "").strip()
        if world not in ("", "0", "1"):  # torchrun: each rank is its own process with its own policy
            entry += f" (torchrun rank {os.environ.get('RANK', '?')} of {world})"
        _applied = {"entry": entry, "allocator": set_allocator()}
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
        _applied["threads"] = threads
    return dict(_applied)


def describe() -> dict:
    """The policy in effect, for a start record: what apply() did, or that no entry point
    applied it (a library caller); torch's thread count when torch is loaded."""
    out = dict(_applied) if _applied is not None else {"entry": None, "allocator": {"policy": "not applied"}}
    torch = sys.modules.get("torch")
    if torch is not None:
        out["threads"] = torch.get_num_threads()
    return out
