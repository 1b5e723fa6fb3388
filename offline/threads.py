"""Work spread over the cores in threads, each held to one BLAS and one OpenMP thread, or in
forked processes for work that holds the GIL too often to share one interpreter.

Most of the trainer's batch work is numpy, scipy, implicit and LightGBM, which release the
GIL, so threads use every core without copying the models into processes. Each thread's
libraries must then keep to one thread of their own: more threads than cores only contend
(at 1M interactions the export took 247 CPU seconds instead of 218). OpenMP's limit is per
thread, BLAS's global; libraries that set their own thread count on every call read the
calling thread's limit (``models.base.openmp_threads``).
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, TypeVar

from threadpoolctl import threadpool_limits

Item = TypeVar("Item")
Result = TypeVar("Result")


def on_every_core(work: Callable[[Item], Result], items: Iterable[Item],
                  threads: int | None = None) -> Iterator[Result]:
    """``work`` of each item, in the items' order, on ``threads`` threads (default: one per core)."""

    def on_one_thread(item: Item) -> Result:
        with threadpool_limits(1, "openmp"):
            return work(item)

    try:
        with ThreadPoolExecutor(threads or os.cpu_count() or 1) as pool, threadpool_limits(1, "blas"):
            yield from pool.map(on_one_thread, items)
    finally:
        _hand_back_freed_memory()


def in_forked_processes(work: Callable[[Item], Result], items: Iterable[Item],
                        processes: int | None = None) -> Iterator[Result]:
    """``work`` of each item, in the items' order, in ``processes`` forked processes (default: one
    per core), each held to one BLAS and one OpenMP thread. The processes share the caller's
    memory as it is when called (copied only where written), so ``work`` may read large
    models without their being sent; items and results travel pickled. Threads where the
    platform cannot fork or one process is asked for."""
    processes = processes or os.cpu_count() or 1
    if processes == 1 or "fork" not in multiprocessing.get_all_start_methods():
        yield from on_every_core(work, items, processes)
        return
    # Forked, the processes are handed ``work`` itself, closures and all, not a pickled copy.
    with _forked_pool(processes, work) as pool:
        yield from pool.imap(_run_forked_work, items)


def _forked_pool(processes: int, work: Callable) -> multiprocessing.pool.Pool:
    """A pool whose processes end on the SIGTERM it sends when it closes. A forked process
    inherits the caller's SIGTERM handler, and a handler that raises (``private_stack``'s) can
    land in a finaliser, where Python drops the exception: that process would outlive the pool,
    whose exit then waits on it for good. So each process restores SIGTERM's default action,
    and holds any SIGTERM back until it has."""
    caller_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        return multiprocessing.get_context("fork").Pool(processes, _start_forked, (work, caller_mask))
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, caller_mask)


_forked_work: Callable | None = None  # set in each forked process only


def _start_forked(work: Callable, caller_mask: set[signal.Signals]) -> None:
    global _forked_work
    _forked_work = work
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, caller_mask)
    threadpool_limits(1)


def _run_forked_work(item):
    return _forked_work(item)


def _hand_back_freed_memory() -> None:
    """glibc keeps what each thread freed in that thread's own heap, for its next allocations:
    after the threads' work, the process would stay as large as if it still held it (at 1M
    interactions, 700 MiB more before the hybrid's validation, and a peak over 4 GiB)."""
    trim = getattr(_LIBC, "malloc_trim", None)
    if trim is not None:
        trim(0)


def _loaded_c_library() -> ctypes.CDLL | None:
    """The C library the process already runs on (glibc's has ``malloc_trim``; others may not)."""
    try:
        return ctypes.CDLL(None)
    except (OSError, TypeError):  # no such handle on Windows
        return None


_LIBC = _loaded_c_library()
