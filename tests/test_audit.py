"""gradflow audit: hand-computed statistics, ZClip spikes, a PyTorch run's log."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from gradflow.cli import main
from gradflow.report import AUDIT_KEYS, TrainingLog, audit, read_log, zscore_spikes


def _log(norms, **kw):
    norms = np.asarray(norms, np.float64)
    return TrainingLog(np.arange(norms.size), norms, source="test", **kw)


def test_audit_statistics_by_hand():
    # norms 1..10: p10 = 1.9, median 5.5, p90 = 9.1 (linear interpolation)
    res = audit(_log(np.arange(1.0, 11.0)), 4.0, warmup_steps=25)
    assert res["clip_fraction"] == pytest.approx(0.6)  # 5..10 exceed 4
    assert res["threshold_percentile"] == pytest.approx(40.0)  # 4 of 10 below
    assert res["autoclip_band"] == pytest.approx([1.9, 9.1])
    assert res["median_rule"] == pytest.approx([2.75, 55.0])
    assert res["recommended_range"] == pytest.approx([2.75, 9.1])
    assert res["position"] == "inside" and res["spikes"] == []
    assert list(res)[:4] == list(AUDIT_KEYS)
    # a norm equal to T is not clipped; T below / above the range
    assert audit(_log([1.0, 2.0, 3.0]), 2.0)["threshold_percentile"] == pytest.approx(
        200 / 3
    )
    assert audit(_log(np.arange(1.0, 11.0)), 1.0)["position"] == "below"
    assert audit(_log(np.arange(1.0, 11.0)), 20.0)["position"] == "above"
    # trend: a norm that grows 10x over training is "rising"
    rising = audit(_log(np.geomspace(1.0, 10.0, 100)), 5.0)["trend"]
    assert rising["direction"] == "rising"
    assert rising["slope_log10_per_1000_steps"] == pytest.approx(1000 / 99)


def test_nonfinite_norms_are_counted_apart():
    res = audit(_log([1.0, np.nan, 2.0, np.inf, 3.0]), 2.5)
    assert res["nonfinite_steps"] == [1, 3]
    assert res["clip_fraction"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="no finite gradient norm"):
        audit(_log([np.nan]), 1.0)
    with pytest.raises(ValueError, match="threshold must be > 0"):
        audit(_log([1.0]), 0.0)


def test_zscore_spikes_equal_zclip_reference():
    import torch
    import zclip

    rng = np.random.default_rng(0)
    norms = np.exp(rng.normal(0.0, 0.3, 120))
    norms[[40, 41, 77, 100]] *= [20.0, 8.0, 30.0, 5.0]
    model = torch.nn.Linear(1, 1, bias=False).double()
    ref = zclip.ZClip(max_grad_norm=None, warmup_steps=25)
    clipped = []
    for n in norms:
        model.weight.grad = torch.tensor([[n]], dtype=torch.float64)
        ref.step(model)
        clipped.append(float(model.weight.grad[0, 0]) < n)
    spikes = zscore_spikes(norms, warmup_steps=25)
    np.testing.assert_array_equal(spikes, clipped)
    assert spikes[[40, 77]].all()


def _torch_run(path, steps=80):
    """A small PyTorch RNN loop that logs clip_grad_norm_'s return value."""
    import torch

    torch.manual_seed(0)
    rnn = torch.nn.RNN(2, 16)
    head = torch.nn.Linear(16, 1)
    params = [*rnn.parameters(), *head.parameters()]
    opt = torch.optim.SGD(params, lr=0.1)
    rows = []
    for step in range(steps):
        x = torch.rand(30, 8, 2)
        y = x[:3, :, 0].sum(0, keepdim=True).T
        out, _ = rnn(x)
        loss = torch.nn.functional.mse_loss(head(out[-1]), y)
        opt.zero_grad()
        loss.backward()
        norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm=1.0))
        opt.step()
        rows.append(
            {"step": step, "grad_norm": norm, "loss": loss.item(), "clipped": norm > 1}
        )
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return rows


def test_audit_cli_on_a_pytorch_run(tmp_path, capsys):
    rows = _torch_run(tmp_path / "log.csv")
    norms = np.array([r["grad_norm"] for r in rows])
    assert (
        main(["audit", str(tmp_path / "log.csv"), "--threshold", "1.0", "--json"]) == 0
    )
    res = json.loads(capsys.readouterr().out)
    assert set(AUDIT_KEYS) <= set(res)
    assert res["clip_fraction"] == pytest.approx(np.mean(norms > 1.0))
    assert res["logged_clip_fraction"] == pytest.approx(np.mean(norms > 1.0))
    assert res["steps"] == len(rows)
    assert res["loss"]["first"] == pytest.approx(rows[0]["loss"])
    lo, hi = res["recommended_range"]
    assert lo <= np.median(norms) <= hi
    # the same run as JSONL (with an evaluation line that has no norm) and --out
    jsonl = tmp_path / "log.jsonl"
    lines = [json.dumps(r) for r in rows[:40]] + ['{"eval_loss": 0.1}']
    jsonl.write_text("\n".join(lines + [json.dumps(r) for r in rows[40:]]) + "\n")
    out = tmp_path / "audit"
    assert main(["audit", str(jsonl), "--threshold", "1.0", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "recommended range" in text
    saved = json.loads((out / "audit.json").read_text())
    assert saved["clip_fraction"] == pytest.approx(res["clip_fraction"])
    for stem in ("audit_grad_norm", "audit_histogram"):
        assert (out / "figures" / f"{stem}.png").stat().st_size > 1000
    assert "audit_grad_norm" in (out / "audit.html").read_text()


def test_read_log_formats_and_errors(tmp_path):
    (tmp_path / "a.json").write_text(
        json.dumps(
            {
                "norm_before": [[1.0, 2.0, None], [3.0, 4.0, 5.0]],
                "fired": [[0, 1, 0], [1, 1, 1]],
            }
        )
    )
    log = read_log(tmp_path / "a.json", seed=1)
    np.testing.assert_array_equal(log.grad_norm, [3.0, 4.0, 5.0])
    assert log.clipped.tolist() == [True, True, True]
    assert np.isnan(read_log(tmp_path / "a.json").grad_norm[2])
    np.savez(tmp_path / "b.npz", grad_norm=np.array([2.0, 1.0]), step=np.array([5, 3]))
    log = read_log(tmp_path / "b.npz")
    assert log.step.tolist() == [3, 5] and log.grad_norm.tolist() == [1.0, 2.0]
    (tmp_path / "c.csv").write_text("step,loss\n0,1.0\n")
    with pytest.raises(
        ValueError, match=r"no gradient-norm series.*the log holds 'loss', 'step'"
    ):
        read_log(tmp_path / "c.csv")
    (tmp_path / "d.csv").write_text("step,grad_norm\n0,abc\n")
    with pytest.raises(
        ValueError, match=r"d\.csv, line 2, column 'grad_norm': expected a number"
    ):
        read_log(tmp_path / "d.csv")
    with pytest.raises(FileNotFoundError):
        read_log(tmp_path / "missing.csv")
    assert main(["audit", str(tmp_path / "c.csv"), "--threshold", "1"]) == 2


def test_audit_never_imports_jax(tmp_path):
    (tmp_path / "l.csv").write_text("step,grad_norm\n0,1.0\n1,2.0\n2,3.0\n")
    code = (
        "import sys\nfrom gradflow.cli import main\n"
        f"main(['audit', {str(tmp_path / 'l.csv')!r}, '--threshold', '2', "
        f"'--out', {str(tmp_path / 'o')!r}])\n"
        "assert 'jax' not in sys.modules, 'jax was imported'\n"
        "for m in ('tensorboard', 'mlflow', 'pyarrow', 'tensorboardX'):\n"
        "    assert m not in sys.modules, m + ' was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_audit_reads_a_results_directory_point_and_seed(tmp_path):
    from gradflow import results

    (tmp_path / "points").mkdir()
    (tmp_path / "config.toml").write_text('[experiment]\nkind = "clipping"\n')
    norms = np.array([[1.0, 2.0, 3.0, np.nan], [4.0, 5.0, 6.0, 7.0]], np.float32)
    loss = np.array([[1.0, 1.0, 1.0, np.nan], [1.0, 1.0, 1.0, 1.0]], np.float32)
    for pid in ("a", "b"):
        results.save_point(tmp_path, pid, {"grad_norm": norms, "loss": loss})
        results.write_metrics(tmp_path, {"id": pid, "coords": {}, "metrics": {}})
    log = read_log(tmp_path, point="b", seed=0)
    # a diverged seed's absent steps (NaN loss and norm) are left out, not data
    assert log.grad_norm.tolist() == [1.0, 2.0, 3.0] and log.step.tolist() == [0, 1, 2]
    assert read_log(tmp_path, seed=1).grad_norm.tolist() == [4.0, 5.0, 6.0, 7.0]
    with pytest.raises(ValueError, match="point must be one of"):
        read_log(tmp_path, point="c")
    with pytest.raises(ValueError, match="seed must be < 2"):
        read_log(tmp_path, seed=2)
