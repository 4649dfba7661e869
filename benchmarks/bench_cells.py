"""Cells: gradflow (jax.jit) against torch.nn.RNN/LSTM/GRU in the same process.

Forward (all hidden outputs) and forward+backward (gradient of the sum of the
outputs with respect to every parameter) of one layer, N=128, batch 32, input
32, T=100 and T=1000. Both get the same weights and inputs (the script first
checks that outputs and gradients agree); torch gets ``--threads`` threads
(default: every core). jax compile time is excluded; every timed call ends with
``block_until_ready``.

The programs of a row are called in turn, ``--pairs`` times (gradflow, torch,
and for LSTM/GRU fwd+bwd also gradflow with ``fused=False``), so load from
other jobs hits all of them alike; each row reports the median of the
per-round ratios and their interquartile range, which is what stays
meaningful on a shared machine (the absolute times move with load).

``--devices K`` gives jax K devices (on CPU, ``jax_num_cpu_devices`` is set
before jax starts) and shards the batch axis of the inputs over them
(``jax.sharding``, parameters replicated): data parallelism across cores, the
same code that splits a batch over several GPUs. Where jax runs on a GPU and
torch sees CUDA, torch runs there too.

    .venv/bin/python benchmarks/bench_cells.py              # the table
    .venv/bin/python benchmarks/bench_cells.py --quick      # T=100 only
    .venv/bin/python benchmarks/bench_cells.py --devices 2  # batch over 2 devices
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

N, BATCH, D = 128, 32, 32
TORCH = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}


def programs(kind: str, steps: int, devices: int, torch_device: str):
    """``{pass: {name: zero-argument callable}}`` and a parity check."""
    import jax
    import jax.numpy as jnp
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    import gradflow as gf

    torch.manual_seed(0)
    module = TORCH[kind](D, N)
    cell, params = gf.from_torch(module)
    xs_np = np.random.default_rng(0).standard_normal((steps, BATCH, D), np.float32)
    xs = jnp.asarray(xs_np)
    if devices > 1:
        mesh = Mesh(np.asarray(jax.devices()[:devices]), ("batch",))
        xs = jax.device_put(xs, NamedSharding(mesh, PartitionSpec(None, "batch")))
        params = jax.device_put(params, NamedSharding(mesh, PartitionSpec()))

    def grad_of(c):
        return jax.jit(jax.grad(lambda p, x: jnp.sum(gf.unroll(c, p, x)[1])))

    fwd = jax.jit(lambda p, x: gf.unroll(cell, p, x)[1])
    bwd = grad_of(cell)
    jax.block_until_ready((fwd(params, xs), bwd(params, xs)))  # compile

    module = module.to(torch_device)
    x_t = torch.from_numpy(xs_np).to(torch_device)
    weights = list(module.parameters())

    def sync(out):
        if torch_device != "cpu":
            torch.cuda.synchronize()
        return out

    def torch_fwd():
        with torch.no_grad():
            return sync(module(x_t)[0])

    def torch_bwd():
        out, _ = module(x_t)
        return sync(torch.autograd.grad(out.sum(), weights))

    def check():
        # same function: outputs and gradients agree (float32 rounding)
        ref = torch_fwd().cpu().numpy()
        np.testing.assert_allclose(fwd(params, xs), ref, rtol=1e-5, atol=1e-5)
        grads = bwd(params, xs)
        for k, r in zip(("W_ih", "W_hh", "b_ih", "b_hh"), torch_bwd(), strict=True):
            r = r.cpu().numpy()
            np.testing.assert_allclose(grads[k], r, atol=1e-5 * np.abs(r).max())

    rows = {
        "forward": {
            "gradflow": lambda: jax.block_until_ready(fwd(params, xs)),
            "torch": torch_fwd,
        },
        "fwd+bwd": {
            "gradflow": lambda: jax.block_until_ready(bwd(params, xs)),
            "torch": torch_bwd,
        },
    }
    if cell.sequence is not None:
        plain = grad_of(gf.cells.make(kind, N, fused=False))
        jax.block_until_ready(plain(params, xs))
        rows["fwd+bwd"]["unfused"] = lambda: jax.block_until_ready(plain(params, xs))
    return rows, check


def race(fns: dict, pairs: int) -> dict[str, np.ndarray]:
    """Call every program in turn, ``pairs`` times; their times in ms."""
    for fn in fns.values():  # warm-up (caches, allocator)
        fn()
    times = {name: [] for name in fns}
    for _ in range(pairs):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(1e3 * (time.perf_counter() - t0))
    return {name: np.asarray(t) for name, t in times.items()}


def ratio(a: np.ndarray, b: np.ndarray) -> str:
    """Median of the per-round ratios ``a/b`` with their interquartile range."""
    r = a / b
    q1, med, q3 = np.percentile(r, [25, 50, 75])
    return f"{med:.2f} [{q1:.2f}-{q3:.2f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="T=100 only")
    parser.add_argument("--pairs", type=int, default=15, help="rounds per row")
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1, help="torch threads"
    )
    parser.add_argument(
        "--devices", type=int, default=1, help="jax devices to shard the batch over"
    )
    parser.add_argument("--cells", default="rnn,lstm,gru", help="comma-separated")
    args = parser.parse_args()

    import jax

    # On CPU jax has one device unless told before it starts; harmless elsewhere.
    jax.config.update("jax_num_cpu_devices", max(args.devices, 1))
    if len(jax.devices()) < args.devices:
        raise SystemExit(f"--devices {args.devices}: jax sees {jax.devices()}")
    on_gpu = jax.default_backend() == "gpu" and torch.cuda.is_available()
    torch_device = "cuda" if on_gpu else "cpu"

    torch.set_num_threads(args.threads)
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"jax {jax.__version__} ({jax.default_backend()}, {args.devices} device(s), "
        f"batch sharded over them), torch {torch.__version__} ({torch_device}, "
        f"{torch.get_num_threads()} threads)"
    )
    print(
        f"# N={N}, batch={BATCH}, input={D}; {args.pairs} rounds per row; median "
        f"ms; ratios: median [interquartile range] of the per-round ratios; "
        f"load average {os.getloadavg()[0]:.1f}\n"
    )
    print(
        "| cell | T | pass | gradflow ms | torch.nn ms | gradflow/torch "
        "| fused/unfused |"
    )
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: |")
    lengths = (100,) if args.quick else (100, 1000)
    t_start = time.perf_counter()
    for kind in args.cells.split(","):
        for steps in lengths:
            rows, check = programs(kind, steps, args.devices, torch_device)
            check()
            for name, fns in rows.items():
                t = race(fns, args.pairs)
                g, ref = t["gradflow"], t["torch"]
                ab = ratio(g, t["unfused"]) if "unfused" in t else ""
                print(
                    f"| {kind} | {steps} | {name} | {np.median(g):.2f} "
                    f"| {np.median(ref):.2f} | {ratio(g, ref)} | {ab} |",
                    flush=True,
                )
    print(
        f"\n# total {time.perf_counter() - t_start:.0f} s; "
        f"load average {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
