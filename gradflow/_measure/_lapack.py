"""Pin the LAPACK that jax's CPU kernels call to one thread, for a block of code.

On CPU, ``jnp.linalg.qr``/``svd``/``eigh`` are custom calls into the LAPACK
that SciPy ships (an OpenBLAS that starts its own threads). XLA already runs
the program on its own thread pool, so a multi-threaded OpenBLAS only adds
threads that spin between its calls and take cores from XLA's threads. The
measurements call LAPACK once per step (Benettin's QR, the Jacobian
products' subspace iteration and SVD fallback): with OpenBLAS threaded, a
2-core machine ran a batched LSTM point 10-100x slower, depending on what had
run before in the process (see benchmarks/README.md, "Sweep").
``OPENBLAS_NUM_THREADS=1`` in the environment does the same for a whole process.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Iterator

# (set, get) symbol pairs: SciPy's LP64 build, NumPy's ILP64 one, plain OpenBLAS.
_SYMBOLS = (
    ("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"),
    ("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
    ("openblas_set_num_threads", "openblas_get_num_threads"),
)


def _loaded_openblas() -> list[tuple[ctypes._CFuncPtr, ctypes._CFuncPtr]]:
    """``(set, get)`` of every OpenBLAS loaded in this process (Linux; else [])."""
    # jaxlib takes its LAPACK kernels from here; importing loads its OpenBLAS.
    import scipy.linalg.cython_lapack  # noqa: F401

    try:
        with open(f"/proc/{os.getpid()}/maps") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.lower()}
    except OSError:
        return []
    found = []
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for set_name, get_name in _SYMBOLS:
            if hasattr(lib, set_name) and hasattr(lib, get_name):
                setter, getter = getattr(lib, set_name), getattr(lib, get_name)
                setter.argtypes, setter.restype = [ctypes.c_int], None
                getter.argtypes, getter.restype = [], ctypes.c_int
                found.append((setter, getter))
                break
    return found


@contextlib.contextmanager
def single_threaded_lapack() -> Iterator[list[int]]:
    """Within the block, every loaded OpenBLAS runs on one thread.

    Restores each library's thread count on exit. A no-op where no OpenBLAS
    is found (another LAPACK, or no ``/proc``). Yields the thread counts it
    found (one per library), for inspection.

    Example:
        >>> with single_threaded_lapack():
        ...     out = jax.block_until_ready(fn(xs))
    """
    libs = _loaded_openblas()
    before = [get() for _, get in libs]
    for setter, _ in libs:
        setter(1)
    try:
        yield before
    finally:
        for (setter, _), n in zip(libs, before, strict=True):
            setter(n)
