"""One OpenBLAS thread for the commands whose NumPy work is a few small matrix products.

``generate``'s torch-free decode and the explorer's (one image per request) multiply matrices of
a few hundred rows: a second OpenBLAS thread gains little there and adds a hand-off that, on a
busy machine, waits for a core. With two other processes holding both cores of a 2-core machine,
the explorer's decode of one latent took up to 24 ms (default model, median 0.40 ms) with
OpenBLAS's default of one thread per core and at most 0.55 ms with one; ``generate`` of 64
samples from the hierarchical model 1.73 s against 0.54 s (benchmarks/README.md, 2026-12-05).
"""

from __future__ import annotations

import os

# Commands (by their name on the command line) that get one OpenBLAS thread.
SMALL_NUMPY_COMMANDS = ("explore", "generate")
VARIABLE = "OPENBLAS_NUM_THREADS"


def use_one_blas_thread() -> None:
    """Ask for one OpenBLAS thread, unless the user set a count: OpenBLAS reads the variable
    once, as NumPy loads it, so this runs before NumPy is imported (later it changes nothing)."""
    os.environ.setdefault(VARIABLE, "1")
