import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def x64():
    """Run a test in float64 (closed forms that float32 cannot resolve)."""
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", False)


def tol(dtype) -> float:
    """A relative tolerance that fits the dtype's precision."""
    import numpy as np

    return 1e-10 if np.dtype(dtype) == np.float64 else 1e-5


def all_arrays(out) -> dict:
    """Every point's arrays of the results directory ``out``, by point id."""
    from gradflow import results

    res = results.load(out)
    return {r["id"]: res.arrays(r["id"]) for r in res.records}


#: ``python -c CLI_WITH_CTRL_C ARGS`` runs ``gradflow ARGS`` taking Ctrl-C as a
#: terminal delivers it, however the suite was started: under ``nohup`` or a
#: CI runner that starts jobs with SIGINT ignored, a child inherits the ignore
#: and (rightly, as a background job) would never see the signal.
CLI_WITH_CTRL_C = (
    "import runpy, signal; "
    "signal.signal(signal.SIGINT, signal.default_int_handler); "
    "runpy.run_module('gradflow.cli', run_name='__main__', alter_sys=True)"
)


@pytest.fixture
def default_sigint():
    """Python's own SIGINT handler for the test, whatever the suite inherited."""
    import signal

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)
