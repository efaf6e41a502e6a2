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
try; training takes train.num_threads (0: automatic: torch's default, one per core, or
one thread where a timed trial of the first step finds it faster, choose_threads()).
The window trains on every core with its training threads below the interface's
priority (window_training()).
"""
from __future__ import annotations

import ctypes
import os
import sys
import threading
import time

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


# ---- the window's training: every core, below the interface
# The window trains in a worker thread of the interface's process. At the interface's
# priority, torch's thread team (the trainer thread and the OpenMP workers it starts)
# takes every core and the interface waits for one (measured: p99 event delay 45 ms with
# 2 threads of 2 cores against 22 ms with 1), so the window used to train on cores - 1
# threads: half the CLI's speed on 2 cores. Instead the team runs at a lower priority
# (Linux nice is per thread, and a thread starts at its creator's nice, so lowering the
# trainer thread before torch starts its team lowers the whole team): every core trains,
# and the interface thread, the only thread at the normal priority, gets a core the moment
# it wakes (bench/gui_latency.py). Where the kernel groups processes by session
# (autogroup, the default on desktop Linux) or by cgroup, a thread's nice only weighs
# against the threads of its own group, i.e. of this process: training does not yield
# to other programs more than it did, only to the interface.
ENV_TRAINER_NICE = "WORKBENCH_TRAINER_NICE"  # the team's nice increment, 0-19; 0: cores - 1 at the normal priority
TRAINER_NICE = 5  # weight 335 against the interface's 1024 (the kernel's nice-to-weight table)
_thread_state = threading.local()  # what window_training() did in this thread, for describe()


def _trainer_nice() -> int:
    value = os.environ.get(ENV_TRAINER_NICE, "").strip()
    if not value:
        return TRAINER_NICE
    if not value.isdigit() or int(value) > 19:
        from workbench.spec import SpecError

        raise SpecError(ENV_TRAINER_NICE, f"must be a whole number from 0 to 19 (it is {value!r})")
    return int(value)


def window_plan(threads: int = 0) -> dict:
    """How the window trains: torch threads and the nice increment of the training
    thread's team. ``threads``: train.num_threads (0: automatic). Every core at nice
    +TRAINER_NICE on Linux; cores - 1 threads at the normal priority (the fallback, so
    the interface keeps a core) where per-thread priorities are unavailable or
    WORKBENCH_TRAINER_NICE=0 turns the policy off."""
    nice = _trainer_nice()
    cores = cpu_cores()
    why = ""
    if not sys.platform.startswith("linux"):
        why = f"per-thread priority is Linux's ({sys.platform})"
    elif nice == 0:
        why = f"{ENV_TRAINER_NICE}=0"
    if why:
        return _cores_less_one(threads, why)
    return {"policy": "every core, below the interface", "threads": threads or cores, "nice": nice}


def _cores_less_one(threads: int, why: str) -> dict:
    """The fallback plan: cores - 1 threads (or train.num_threads) at the normal priority,
    so that the interface keeps a core."""
    return {"policy": "cores - 1", "threads": threads or max(1, cpu_cores() - 1), "nice": 0, "why": why}


def lower_this_thread(increment: int) -> int:
    """Run the calling thread ``increment`` nice levels below the process's main thread
    (the interface), at most 19; never raises its priority (nobody but root may). The
    threads it starts afterwards, such as torch's OpenMP team on its first parallel op,
    inherit it. Returns the thread's nice value after it, or 0 where it cannot be changed
    (other systems)."""
    if not sys.platform.startswith("linux") or increment <= 0:
        return 0
    tid = threading.get_native_id()
    try:
        want = min(19, os.getpriority(os.PRIO_PROCESS, os.getpid()) + increment)  # (the main thread's)
        if os.getpriority(os.PRIO_PROCESS, tid) < want:
            os.setpriority(os.PRIO_PROCESS, tid, want)
        return os.getpriority(os.PRIO_PROCESS, tid)
    except (AttributeError, OSError):
        return 0


def _thread_nices() -> dict[int, int]:
    """{thread id: nice} of this process's threads (Linux; {} elsewhere)."""
    out = {}
    try:
        names = os.listdir("/proc/self/task")
    except OSError:
        return out
    for name in names:
        try:
            with open(f"/proc/self/task/{name}/stat", encoding="ascii", errors="replace") as f:
                fields = f.read().rsplit(")", 1)[1].split()  # after "pid (comm)": state is field 3
            out[int(name)] = int(fields[16])  # field 19: nice
        except (OSError, IndexError, ValueError):
            continue
    return out


def window_training(threads: int = 0) -> dict:
    """Apply window_plan() in the calling thread, the window's training thread, before
    the trainer runs there: lower the thread, set torch's thread count and start the
    thread team now with a small parallel op, so that it inherits the priority; any
    thread the op started below it (a library's pool made some other way) is lowered
    too. Never lowers the main thread (a caller training on it, as tests do, keeps its
    priority). Returns the plan with what was done ("nice": the thread's nice value
    now); describe() adds it to the start record of a run trained in this thread."""
    plan = window_plan(threads)
    if threading.current_thread() is threading.main_thread():
        plan.update(nice=0, lowered="no: the main thread (the interface's) is never lowered")
    elif plan["nice"]:
        before = _thread_nices()
        base = os.getpriority(os.PRIO_PROCESS, os.getpid())
        plan["nice"] = lower_this_thread(plan["nice"])  # from here on the thread's nice value, not the increment
        if plan["nice"] <= base:  # refused (a sandbox, say): every core at the interface's priority would starve it
            plan = _cores_less_one(threads, "the training thread's priority could not be lowered")
    import torch

    torch.set_num_threads(plan["threads"])
    if plan["nice"]:
        torch.ones(plan["threads"] * 65536).add_(1.0)  # parallel_for's grain is 32,768 elements: every thread
        started = {tid: nice for tid, nice in _thread_nices().items() if tid not in before}
        for tid, nice in started.items():
            if nice < plan["nice"]:
                try:
                    os.setpriority(os.PRIO_PROCESS, tid, plan["nice"])
                except OSError:
                    pass
        plan["team_started"] = len(started)  # threads torch started for this thread now (0: a team it had)
    _thread_state.window = dict(plan)
    return plan


# ---- small models: the thread count by timing
ENV_THREAD_TRIAL = "WORKBENCH_THREAD_TRIAL"  # "off": keep torch's automatic thread count untimed
TRIAL_BUDGET_S = 1.0  # the timed rounds stop once they took this long
TRIAL_MAX_ROUNDS = 6
TRIAL_CLOCK = time.perf_counter  # (tests put a fake clock here)


def choose_threads(candidates: list[int], run_step, budget_s: float = TRIAL_BUDGET_S,
                   clock=None) -> dict:
    """Pick the fastest of ``candidates`` (torch thread counts, the automatic one first)
    by timing ``run_step(threads)``, one training step's forward and backward run with
    that many threads. On a small model a thread team costs more in waking and waiting
    than it saves, and beside a busy process the team waits for its slowest member at
    every parallel op (issue 15: an adding-task eval took 20-27 s on 2 threads beside a
    busy process against 0.24 s on one). The first candidate runs once untimed (a new
    team, first-use kernels and memory), then rounds of one timed step per candidate
    follow until the budget is spent: at least one round (so a few steps however slow
    a step is), at most TRIAL_MAX_ROUNDS. A candidate's time is its fastest step (the
    least disturbed by other processes); a tie goes to fewer threads. Returns
    {"threads": choice, "step_ms": {threads: ms}, "trial_s": seconds spent}."""
    clock = clock or TRIAL_CLOCK
    start = clock()
    times: dict[int, list[float]] = {n: [] for n in candidates}
    run_step(candidates[0])  # untimed
    timed_from = clock()
    for _ in range(TRIAL_MAX_ROUNDS):
        for n in candidates:
            t0 = clock()
            run_step(n)
            times[n].append(clock() - t0)
        if clock() - timed_from >= budget_s:
            break
    best = min(candidates, key=lambda n: (min(times[n]), n))
    return {"threads": best, "step_ms": {str(n): round(1000 * min(times[n]), 3) for n in candidates},
            "trial_s": round(clock() - start, 3)}


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
    window = getattr(_thread_state, "window", None)
    if window is not None:  # a run trained in the window's training thread
        out["window"] = dict(window)
    return out
