"""Training's seed loop split over several (CPU) devices.

Runs in a fresh process: jax fixes its device count when it starts.
"""

import json
import os
import subprocess
import sys
import textwrap

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
