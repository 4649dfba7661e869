"""Training's seed loop and measurement sweeps split over several (CPU) devices.

Runs in a fresh process: jax fixes its device count when it starts.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np

from gradflow import results

TRAIN = textwrap.dedent(
    """
    import json
    import jax, jax.numpy as jnp, numpy as np
    import gradflow as gf

    task = gf.tasks.adding(6)
    cell = gf.cells.rnn(4)
    args = dict(steps=5, learning_rate=0.1, batch_size=3,
                clip=gf.train.clipper("global_norm", 1.0))
    keys = jax.vmap(jax.random.key)(jnp.arange(3, dtype=jnp.uint32))
    # 3 seeds over 2 devices: padded to 4, then cut back to 3
    both = gf.train.train(cell, task, "sgd", key=keys, **args)
    diff = 0.0
    for s in range(3):
        one = gf.train.train(cell, task, "sgd", key=keys[s], **args)
        for a, b in zip(jax.tree_util.tree_leaves(both),
                        jax.tree_util.tree_leaves(one), strict=True):
            a, b = np.asarray(a, float)[s], np.asarray(b, float)
            assert a.shape == b.shape and np.array_equal(np.isnan(a), np.isnan(b))
            diff = max(diff, float(np.nanmax(np.abs(a - b), initial=0.0)))
    print(json.dumps({"devices": jax.device_count(),
                      "seeds": int(both.log.loss.shape[0]), "diff": diff}))
    """
)


def test_seed_loop_over_two_devices_equals_one_seed_at_a_time():
    """3 seeds over 2 devices (padded to 4, cut back to 3): every array equals
    the one-seed program's."""
    env = {**os.environ, "JAX_NUM_CPU_DEVICES": "2", "JAX_PLATFORMS": "cpu"}
    env["XLA_FLAGS"] = ""
    proc = subprocess.run(
        [sys.executable, "-c", TRAIN], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["devices"] == 2 and out["seeds"] == 3
    assert out["diff"] <= 1e-6


RUN = [sys.executable, "-m", "gradflow.cli", "run"]
DEADLOCK_CONFIG = textwrap.dedent(
    """\
    [experiment]
    name = "cores"
    [grid]
    cell = "rnn"
    hidden_size = 128
    init = "gaussian"
    gain = [0.5, 1.5]
    length = 1000
    input = "gaussian"
    seeds = 4
    [measure]
    grad_norms = true
    """
)


def test_a_sweep_over_two_cpu_devices_finishes_and_equals_one_device(tmp_path):
    """With seeds vmapped on each of 2 CPU devices, this grid (init_scale's
    shapes) deadlocked inside jaxlib's batched SVD (the always-on bound's
    ``norm(W_hh, 2)``) in 3 of 3 runs on 2 cores, every thread idle; the runner
    now maps over each device's seeds there. The numbers equal one device's."""
    (tmp_path / "cores.toml").write_text(DEADLOCK_CONFIG)
    env = {**os.environ, "XLA_FLAGS": "", "JAX_PLATFORMS": "cpu"}
    runs = {}
    for devices in ("2", "1"):
        proc = subprocess.run(
            [*RUN, "cores.toml", "--out", devices, "--quiet"],
            cwd=tmp_path,
            env={**env, "JAX_NUM_CPU_DEVICES": devices},
            capture_output=True,
            text=True,
            timeout=180,  # a deadlock fails here instead of hanging the suite
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs[devices] = results.load(tmp_path / devices)
        assert runs[devices].provenance["device_count"] == int(devices)
    for rec in runs["1"].records:
        one = runs["1"].arrays(rec["id"])
        two = runs["2"].arrays(rec["id"])
        np.testing.assert_allclose(
            two["log10_grad_norms"], one["log10_grad_norms"], rtol=0, atol=1e-5
        )
