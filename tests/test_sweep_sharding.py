"""Seeds sharded over 8 (fake CPU) devices give the single-device numbers."""

import json
import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax
    import numpy as np
    from gradflow import results, sweep

    assert jax.device_count() == 8, jax.devices()
    # quick = true: compiled at -O0, as `gradflow run --quick` does (faster).
    cfg = sweep.validate(
        {
            "experiment": {"quick": True},
            "grid": {"cell": "gru", "hidden_size": 6, "length": 10,
                     "gain": [0.8, 1.6], "seeds": 3},
            # vmap (grad norms, Lyapunov) and per-device lax.map (Jacobians).
            "measure": {"grad_norms": True, "lyapunov": {"k": 3, "warmup": 2},
                        "jacobian_norms": True},
        }
    )
    out = sys.argv[1]
    sweep.run(cfg, out + "/all", progress="none")
    sweep.run(cfg, out + "/one", progress="none", devices=jax.devices()[:1])
    a, b = results.load(out + "/all"), results.load(out + "/one")
    report = {"devices": [a.provenance["device_count"], b.provenance["device_count"]],
              "ids": [[r["id"] for r in a.records], [r["id"] for r in b.records]],
              "max_diff": 0.0, "exact": 0, "arrays": 0, "shapes": []}
    for rec in a.records:
        x, y = a.arrays(rec["id"]), b.arrays(rec["id"])
        for name in x:
            report["shapes"].append(list(x[name].shape))
            report["arrays"] += 1
            report["exact"] += int(np.array_equal(x[name], y[name]))
            # boolean arrays (e.g. lyapunov_resolved) compare as 0/1
            xf, yf = (v.astype(float) if v.dtype == bool else v
                      for v in (x[name], y[name]))
            diff = float(np.max(np.abs(xf - yf)))
            report["max_diff"] = max(report["max_diff"], diff)
        mx = {k: v for k, v in rec["metrics"].items() if k != "half_life"}
        (other,) = b.select(**rec["coords"])
        for k, v in mx.items():
            # null (a non-finite value, e.g. an unreached memory horizon) is NaN;
            # both runs must have it at the same seeds.
            p, q = (np.array(m, dtype=float) for m in (v, other["metrics"][k]))
            same_nan = np.array_equal(np.isnan(p), np.isnan(q))
            diff = float(np.max(np.abs(np.where(np.isnan(p), 0.0, p - q))))
            report["max_diff"] = max(report["max_diff"], diff if same_nan else 1e9)
    print(json.dumps(report))
    """
)


def test_sharded_equals_single_device(tmp_path):
    env = dict(os.environ)
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["devices"] == [8, 1]
    assert report["ids"][0] == report["ids"][1] and len(report["ids"][0]) == 2
    # 3 seeds padded to 8 on the mesh, cut back to 3 on the way out.
    assert all(shape[0] == 3 for shape in report["shapes"])
    # five arrays per point (lyapunov_resolved added the fifth)
    assert report["arrays"] == 2 * 5
    # Batch sizes differ (8 padded rows over 8 devices vs 3 on one), so XLA may
    # pick other kernels: equal to float32 rounding.
    assert report["max_diff"] < 1e-5, report
