"""The explorer's address space: few threads, few malloc arenas.

An idle explorer held 3.4 GiB of address space after start-up and 3.9 GiB after a burst of
requests on a 2-core machine (VmSize 4,075,516 kB, just under a 4 GiB ``ulimit -v``), and more
with more cores:

- 2.2 GiB are torch's CUDA libraries (cuBLAS, cuFFT, NCCL...), mapped from their files when
  torch is imported even though the explorer computes on the CPU: shared, mostly never read, but
  counted. Nothing short of a CPU-only torch lowers that;
- glibc gives each thread that allocates its own malloc arena, a 64 MiB reservation, up to
  8 per core: the explorer's worker threads (min(32, cores + 4) of them), torch's OpenMP
  threads and OpenBLAS's each took one;
- each thread also reserves its stack (8 MiB by default), and the thread pools of torch
  (OpenMP) and of NumPy's OpenBLAS start one thread per core.

:func:`reserve_less` caps the arenas at ``MALLOC_ARENAS``, torch's compute threads at
``THREADS`` and OpenBLAS's at one (``vae.blas_threads``), called by ``vae.entry`` as the
explorer's process starts (the command line imports NumPy) and again by ``serve``; the explorer's
own pool (``vae.explore.app``) has ``THREADS`` workers. After the same burst: 3.3 GiB (VmSize
3,499,472 kB), of which 689 MiB not mapped from files (was 1,252).
"""

from __future__ import annotations

import ctypes
import os
import sys

from vae.blas_threads import use_one_blas_thread

# Threads for computing: the explorer's workers and torch's pool (OpenBLAS's: one). A request
# decodes one image (a millisecond); more threads than this only reserve memory.
THREADS = max(1, min(4, os.cpu_count() or 1))
# The main thread's arena and one for every other thread, which take turns for it: the
# explorer's threads allocate little, and rarely at the same moment.
MALLOC_ARENAS = 2
M_ARENA_MAX = -8  # mallopt's parameter number (glibc's malloc.h)
# Read when the libraries load (torch in the encoder's thread): the user's own values are kept.
# OpenBLAS (NumPy, with the decoder) gets one thread (vae.blas_threads).
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def reserve_less() -> None:
    """Cap the process's compute threads and malloc arenas before NumPy and torch are imported
    and before any thread starts (the thread counts are read from the environment as the
    libraries load; arenas already made are kept)."""
    for name in THREAD_VARIABLES:
        os.environ.setdefault(name, str(THREADS))
    use_one_blas_thread()
    _cap_malloc_arenas(MALLOC_ARENAS)


def _cap_malloc_arenas(count: int) -> None:
    """glibc's M_ARENA_MAX, as MALLOC_ARENA_MAX would set it at start-up (that variable is read
    only then: setting it now would change nothing in this process). Other C libraries have no
    such arenas."""
    if not sys.platform.startswith("linux"):
        return
    try:
        # The process's own symbols, the C library's among them (ctypes.util.find_library
        # would start a subprocess to look for it).
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # no mallopt: no per-thread arenas to cap
        return
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt(M_ARENA_MAX, count)
