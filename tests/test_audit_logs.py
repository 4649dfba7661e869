"""gradflow audit on TensorBoard, MLflow and W&B logs; groups, forensics, replays."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from gradflow.cli import main
from gradflow.report import TrainingLog, audit, read_log


def _train(steps=120):
    """A small PyTorch RNN run: (step, float32 grad norm, float32 loss) per step."""
    torch.manual_seed(0)
    rnn, head = torch.nn.RNN(2, 16), torch.nn.Linear(16, 1)
    params = [*rnn.parameters(), *head.parameters()]
    opt = torch.optim.SGD(params, lr=0.3)
    out = []
    for step in range(steps):
        x = torch.rand(30, 8, 2) * 2 - 1
        y = x[:3, :, 0].sum(0, keepdim=True).T
        loss = torch.nn.functional.mse_loss(head(rnn(x)[0][-1]), y)
        opt.zero_grad()
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm=1.0)
        opt.step()
        out.append((step, float(norm), loss.item()))
    return out


def _json_audit(capsys, *args):
    argv = ["audit", *map(str, args), "--threshold", "1.0", "--json"]
    argv += ["--replay", "zclip:2.5", "--replay", "autoclip:10", "--replay", "adagc"]
    assert main(argv) == 0, capsys.readouterr().err
    res = json.loads(capsys.readouterr().out)
    res.pop("source")
    return res


def test_one_run_logged_four_ways_gives_identical_audits(tmp_path, capsys):
    import mlflow
    import tensorboardX
    from mlflow.entities import Metric
    from torch.utils.tensorboard import SummaryWriter

    rows = _train()
    with open(tmp_path / "log.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "grad_norm", "loss"])
        w.writerows(rows)
    for name, writer_cls in (
        ("torch", SummaryWriter),
        ("tbx", tensorboardX.SummaryWriter),
    ):
        writer = writer_cls(str(tmp_path / name))
        for step, norm, loss in rows:
            writer.add_scalar("grad_norm", norm, step)
            writer.add_scalar("loss", loss, step)
        writer.close()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    run = client.create_run(client.create_experiment("audit"))
    metrics = [Metric("grad_norm", n, 1000 + s, s) for s, n, _ in rows]
    metrics += [Metric("loss", v, 1000 + s, s) for s, _, v in rows]
    client.log_batch(run.info.run_id, metrics=metrics)

    want = _json_audit(capsys, tmp_path / "log.csv")
    assert want["steps"] == len(rows) and want["loss"]["first"] == rows[0][2]
    assert want["clip_fraction"] == np.mean([n > 1.0 for _, n, _ in rows])
    assert [r["method"] for r in want["replays"]] == ["zclip", "autoclip", "adagc"]
    for args in (
        [tmp_path / "torch"],
        [tmp_path / "tbx"],
        [f"mlflow:{run.info.run_id}", "--tracking-uri", uri],
    ):
        assert _json_audit(capsys, *args) == want, args


def _tf2_scalars(directory, tag, values, *, extra_tags=(), first_step=0, suffix=""):
    """Scalars as TF2/clu writers store them: tensors, plugin metadata once."""
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter
    from tensorboard.util import tensor_util

    writer = EventFileWriter(str(directory), filename_suffix=suffix)
    for step, v in enumerate(values, start=first_step):
        vals = []
        for t, x in ((tag, v), *((e, v * 2) for e in extra_tags)):
            val = summary_pb2.Summary.Value(
                tag=t, tensor=tensor_util.make_tensor_proto(np.float32(x))
            )
            if step == first_step:
                val.metadata.plugin_data.plugin_name = "scalars"
            vals.append(val)
        # a histogram-like tensor of another plugin is not a scalar
        other = summary_pb2.Summary.Value(
            tag="weights", tensor=tensor_util.make_tensor_proto(np.ones(3, np.float32))
        )
        other.metadata.plugin_data.plugin_name = "histograms"
        event = event_pb2.Event(
            step=step,
            wall_time=1.0 + step,
            summary=summary_pb2.Summary(value=[*vals, other]),
        )
        writer.add_event(event)
    writer.close()


def test_tensorboard_tensors_groups_several_runs_and_damaged_files(tmp_path):
    values = np.float32(np.linspace(0.5, 2.0, 60))
    _tf2_scalars(
        tmp_path / "tf2",
        "train/grad_norm",
        values,
        extra_tags=["train/grad_norm/dense"],
    )
    log = read_log(tmp_path / "tf2")
    np.testing.assert_array_equal(log.grad_norm, values.astype(np.float64))
    np.testing.assert_array_equal(log.groups["dense"], 2 * values.astype(np.float64))
    with pytest.raises(
        ValueError,
        match=r"'gradnorm' is not.*'train/grad_norm', 'train/grad_norm/dense'$",
    ):
        read_log(tmp_path / "tf2", key="gradnorm")
    # a resumed run: a second file repeats steps 40..59; the later file wins
    _tf2_scalars(tmp_path / "tf2", "train/grad_norm", 3 * values[:40], first_step=40)
    log = read_log(tmp_path / "tf2")
    assert log.step.tolist() == list(range(80))
    np.testing.assert_array_equal(log.grad_norm[40:], 3 * values[:40])
    np.testing.assert_array_equal(log.grad_norm[:40], values[:40])
    assert "20 duplicate step record(s)" in log.notes[0]
    _tf2_scalars(tmp_path / "tf2b", "grad_norm", values)
    root = tmp_path
    with pytest.raises(ValueError, match="holds 2 TensorBoard runs"):
        read_log(root)
    # a file cut mid-record, and one with a flipped byte: the file and the record
    (event,) = (tmp_path / "tf2b").glob("*tfevents*")
    data = event.read_bytes()
    (tmp_path / "cut").mkdir()
    cut = tmp_path / "cut" / event.name
    cut.write_bytes(data[:-7])
    with pytest.raises(ValueError, match=r"cut.*: record 61 \(byte \d+\) is truncated"):
        read_log(cut)
    bad = bytearray(data)
    bad[len(data) // 2] ^= 0xFF
    cut.write_bytes(bytes(bad))
    with pytest.raises(
        ValueError, match=r"record \d+ \(byte \d+\) is truncated or corrupted.*crc"
    ):
        read_log(cut)


def test_wandb_parquet_and_csv_with_sparse_columns(tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(3)
    norms = np.exp(rng.normal(0, 0.2, 80))
    rows = []
    for s, n in enumerate(norms):
        rows.append(
            {
                "_step": 2 * s,
                "train/grad_norm": n,
                "train/loss": 1.0 / (s + 1),
                "_runtime": 0.1 * s,
                "run": "a",
                "eval/acc": None,
            }
        )
        if s % 20 == 19:  # an evaluation record between training steps
            rows.append(
                {
                    "_step": 2 * s + 1,
                    "train/grad_norm": None,
                    "train/loss": None,
                    "_runtime": 0.1 * s,
                    "run": "a",
                    "eval/acc": 0.5,
                }
            )
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "history.parquet")
    with open(tmp_path / "history.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    a = read_log(tmp_path / "history.parquet")
    b = read_log(tmp_path / "history.csv")
    for log in (a, b):
        assert log.step.tolist() == list(range(0, 160, 2))  # eval rows not norms
        np.testing.assert_allclose(log.grad_norm, norms, rtol=1e-15)
        assert log.loss[3] == pytest.approx(0.25)
    with pytest.raises(ValueError, match=r"history\.csv, line 2, column 'run'"):
        read_log(tmp_path / "history.csv", key="run")
    assert read_log(tmp_path / "history.csv", key="_runtime").grad_norm[
        2
    ] == pytest.approx(0.2)


def _planted(n=300, spike=150, lag=3):
    rng = np.random.default_rng(7)
    rnn = np.exp(rng.normal(0, 0.1, n))
    head = 0.5 * np.exp(rng.normal(0, 0.1, n))
    rnn[spike] *= 25.0
    loss = np.exp(rng.normal(0, 0.02, n)) * np.linspace(2, 1, n)
    loss[spike + lag] *= 4.0
    return rnn, head, loss


def test_groups_forensics_and_replays_on_a_planted_spike(tmp_path):
    import zclip

    rnn, head, loss = _planted()
    total = np.sqrt(rnn**2 + head**2)
    log = TrainingLog(
        np.arange(300), total, loss, source="x", groups={"rnn": rnn, "head": head}
    )
    reps = ("global_norm:1.5", "autoclip:10", "zclip:2.5", "adagc")
    res = audit(log, 1.5, window=5, replays=reps)
    (spike,) = [s for s in res["spikes"] if s["step"] == 150]
    assert spike["groups"] == ["rnn"] and spike["largest_jump"] == "rnn"
    assert spike["loss_spike_after"] is True and spike["lag"] == 3
    assert 150 in res["groups"]["rnn"]["spikes"]
    assert 150 not in res["groups"]["head"]["spikes"]
    assert 153 in res["loss_spikes"]
    # a window shorter than the lag: no loss spike follows
    short = audit(log, 1.5, window=2)
    assert next(s for s in short["spikes"] if s["step"] == 150)["lag"] is None
    by = {r["method"]: r for r in res["replays"]}
    glob = by["global_norm"]
    assert glob["clipped_steps"] == np.flatnonzero(total > 1.5).tolist()
    np.testing.assert_allclose(glob["factors"], 1.5 / total[total > 1.5])
    # AutoClip by hand: the 10th percentile of every norm so far
    thr = np.array([np.percentile(total[: i + 1], 10) for i in range(300)])
    assert by["autoclip"]["clipped_steps"] == np.flatnonzero(total > thr).tolist()
    np.testing.assert_allclose(by["autoclip"]["factors"], (thr / total)[total > thr])
    # ZClip against the reference package on a gradient with these norms
    model = torch.nn.Linear(1, 1, bias=False).double()
    ref = zclip.ZClip(max_grad_norm=None)
    want = []
    for g in total:
        model.weight.grad = torch.full((1, 1), g, dtype=torch.float64)
        ref.step(model)
        want.append(float(model.weight.grad) / g)
    want = np.array(want)
    assert by["zclip"]["clipped_steps"] == np.flatnonzero(want < 1).tolist()
    np.testing.assert_allclose(by["zclip"]["factors"], want[want < 1], rtol=1e-12)
    assert 150 in by["zclip"]["clipped_steps"]
    # AdaGC per group: the spiking group is clipped at the spike, hardest
    ada = by["adagc"]["groups"]
    assert 150 in ada["rnn"]["clipped_steps"]
    assert (
        min(ada["rnn"]["factors"])
        == ada["rnn"]["factors"][ada["rnn"]["clipped_steps"].index(150)]
    )


def test_group_csv_without_a_global_norm_and_the_report(tmp_path):
    rnn, head, loss = _planted()
    with open(tmp_path / "g.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "grad_norm/rnn", "grad_norm/head", "loss"])
        w.writerows(zip(range(300), rnn, head, loss, strict=True))
    log = read_log(tmp_path / "g.csv")
    np.testing.assert_allclose(log.grad_norm, np.sqrt(rnn**2 + head**2), rtol=1e-15)
    assert any("root sum of squares" in n for n in log.notes)
    out = tmp_path / "audit"
    assert (
        main(
            [
                "audit",
                str(tmp_path / "g.csv"),
                "--threshold",
                "2",
                "--out",
                str(out),
                "--replay",
                "zclip:2.5",
                "--replay",
                "global_norm:2",
            ]
        )
        == 0
    )
    md = (out / "audit.md").read_text()
    assert "group rnn" in md and "replay zclip:2.5" in md
    assert (out / "figures" / "audit_replay.png").stat().st_size > 1000
    saved = json.loads((out / "audit.json").read_text())
    assert saved["groups"]["rnn"]["spikes"] and saved["spikes"][0]["groups"] == ["rnn"]


def _cli(*args, cwd):
    proc = subprocess.run(
        [sys.executable, "-m", "gradflow.cli", "audit", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def test_audit_cli_faults_in_a_subprocess(tmp_path):
    rng = np.random.default_rng(0)
    n = np.exp(rng.normal(0, 0.2, 300))
    n[150] *= 20
    lines = ["step,grad_norm"] + [f"{i},{v}" for i, v in enumerate(n)]
    lines += [f"{i},{n[i]}" for i in range(100, 200)]  # a resumed run's repeats
    (tmp_path / "dup.csv").write_text("\n".join(lines) + "\n")
    p = _cli("dup.csv", "--threshold", "2", "--json", cwd=tmp_path)
    res = json.loads(p.stdout)
    assert p.returncode == 0 and res["steps"] == 300
    assert [s["step"] for s in res["spikes"]].count(150) == 1
    assert "100 duplicate step record(s)" in p.stderr and "last record" in p.stderr
    # T = inf: valid JSON, the threshold as null
    p = _cli("dup.csv", "--threshold", "inf", "--json", cwd=tmp_path)
    res = json.loads(p.stdout)
    assert p.returncode == 0 and res["threshold"] is None and res["clip_fraction"] == 0
    assert res["verdict"].startswith("T = inf clips nothing (no clipping)")
    # all-zero norms: no [0, 0] range, a true sentence
    (tmp_path / "zero.csv").write_text(
        "step,grad_norm\n" + "".join(f"{i},0\n" for i in range(50))
    )
    p = _cli("zero.csv", "--threshold", "1", cwd=tmp_path)
    assert p.returncode == 0 and "recommended range: none" in p.stdout
    assert "exactly 0" in p.stdout and "no range to recommend" in p.stdout
    import gzip

    (tmp_path / "log.csv.gz").write_bytes(
        gzip.compress((tmp_path / "dup.csv").read_bytes())
    )
    (tmp_path / "bin.dat").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "bad.csv").write_text("step,grad_norm\n0,1\n1,2\n2,x\n")
    (tmp_path / "empty.csv").write_text("")
    for args, message in (
        (["log.csv.gz"], "log.csv.gz: gzip-compressed; decompress it first"),
        (["bin.dat"], "bin.dat: not a text log (byte 0x80 at offset 128"),
        (
            ["bad.csv"],
            "bad.csv, line 4, column 'grad_norm': expected a number, got 'x'",
        ),
        (["empty.csv"], "empty.csv: the file is empty"),
        (
            ["dup.csv", "--key", "gn"],
            "key 'gn' is not a series of this log; it holds 'grad_norm', 'step'",
        ),
        (["dup.csv", "--replay", "zclip:x"], "replay 'zclip:x': 'x' is not a number"),
        (
            ["mlflow:abc", "--tracking-uri", "sqlite:///nowhere.db"],
            "nowhere.db: no such MLflow database",
        ),
    ):
        p = _cli(*args, "--threshold", "1", cwd=tmp_path)
        assert p.returncode == 2 and message in p.stderr, (args, p.stderr)


def test_a_missing_optional_package_names_its_extra(tmp_path, monkeypatch, capsys):
    (tmp_path / "h.parquet").write_bytes(b"PAR1" + b"\0" * 16)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    assert main(["audit", str(tmp_path / "h.parquet"), "--threshold", "1"]) == 2
    assert "pip install 'gradflow-jax[wandb]'" in capsys.readouterr().err
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "events.out.tfevents.1").write_bytes(b"")
    monkeypatch.setitem(sys.modules, "tensorboard.compat.proto", None)
    assert main(["audit", str(tmp_path / "run"), "--threshold", "1"]) == 2
    assert "pip install 'gradflow-jax[tensorboard]'" in capsys.readouterr().err
