"""Sweeps on every core: points/s of ``gradflow run`` with 1 device vs one per core.

On CPU, jax sees one device unless ``jax_num_cpu_devices`` (the environment
variable ``JAX_NUM_CPU_DEVICES``) is set before it starts; the sweep runner
shards each point's seeds over the devices it sees (measurement points: a 1-D
mesh; clipping points: one seed per device at a time). This script runs the
same experiment in fresh processes (``python -m gradflow.cli run CONFIG --out
TMP --quiet``) with 1 device and with ``--devices`` devices, alternately,
``--pairs`` times, and prints the wall time of each run (compilation included:
it is part of what a user waits for), points per second, and the median and
range of the per-pair ratios.

To keep it short, ``--points K`` trims the grid to its first K conditions (a
measure grid's gain range to K values, a clipping study's thresholds to K at
its first learning rate); every point keeps the experiment's sizes (T, N,
seeds, steps), so points/s stays the experiment's.

    .venv/bin/python benchmarks/bench_devices.py experiments/init_scale.toml
    .venv/bin/python benchmarks/bench_devices.py experiments/clipping.toml --points 2
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path


def trimmed(config: dict, points: int | None) -> tuple[dict, str]:
    """The config with its grid cut to ``points`` conditions, and a note."""
    if points is None:
        return config, "full grid"
    if "clipping" in config:
        sec = dict(config["clipping"])
        sec["lrs"] = sec["lrs"][:1]
        if isinstance(sec.get("clip"), list):  # methods, each at its first level
            sec["clip"] = sec["clip"][:points]
            levels = sec.get("levels", {})
            sec["levels"] = {m: v[:1] for m, v in levels.items() if m in sec["clip"]}
            return {**config, "clipping": sec}, f"first {points} methods, first lr"
        sec["thresholds"] = sec["thresholds"][:points]
        return {**config, "clipping": sec}, f"first {points} thresholds, first lr"
    grid = dict(config["grid"])
    gain = grid.get("gain")
    if not (isinstance(gain, dict) and "num" in gain):
        raise SystemExit("--points: this script trims a grid's gain range only")
    grid["gain"] = {**gain, "num": points}
    return {**config, "grid": grid}, f"gain range in {points} values"


def dump_toml(config: dict) -> str:
    """Enough TOML for the configs this script trims (tables of scalars/lists)."""

    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            v = v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
            return f'"{v}"'
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        return repr(v)

    lines = []
    for table, body in config.items():
        lines.append(f"[{table}]")
        lines += [f"{k} = {value(v)}" for k, v in body.items()]
        lines.append("")
    return "\n".join(lines)


def run_once(config_path: Path, devices: int, flags: str = "") -> tuple[float, int]:
    """Wall seconds of one ``gradflow run`` with ``devices`` CPU devices; points."""
    env = {**os.environ, "JAX_NUM_CPU_DEVICES": str(devices)}
    if flags:
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {flags}".strip()
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        cmd = [sys.executable, "-m", "gradflow.cli", "run", str(config_path)]
        t0 = time.perf_counter()
        subprocess.run([*cmd, "--out", str(out), "--quiet"], env=env, check=True)
        wall = time.perf_counter() - t0
        points = len(list((out / "points").glob("*.npz")))
    return wall, points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--devices", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--points", type=int, default=None)
    parser.add_argument(
        "--many-flags",
        default="",
        help="XLA_FLAGS for the many-device runs only, e.g. "
        "--xla_cpu_multi_thread_eigen=false",
    )
    args = parser.parse_args()

    config, note = trimmed(tomllib.loads(args.config.read_text()), args.points)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / args.config.name
        path.write_text(dump_toml(config))
        print(
            f"# {args.config} ({note}); 1 vs {args.devices} CPU devices, "
            f"{args.pairs} alternating pairs; many-device XLA_FLAGS "
            f"{args.many_flags or '(none)'}; load average {os.getloadavg()[0]:.1f}"
        )
        print(
            "| pair | 1 device s | points/s | "
            f"{args.devices} devices s | points/s | ratio (time) |"
        )
        print("| ---: | ---: | ---: | ---: | ---: | ---: |")
        ratios = []
        for i in range(args.pairs):
            one, points = run_once(path, 1)
            many, _ = run_once(path, args.devices, args.many_flags)
            ratios.append(many / one)
            print(
                f"| {i + 1} | {one:.1f} | {points / one:.3f} | {many:.1f} "
                f"| {points / many:.3f} | {many / one:.2f} |",
                flush=True,
            )
    ratios.sort()
    print(
        f"\n# {points} points; {args.devices}-device time / 1-device time: median "
        f"{ratios[len(ratios) // 2]:.2f}, range {ratios[0]:.2f}-{ratios[-1]:.2f}; "
        f"load average {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
