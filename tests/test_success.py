"""Success rates of a clipping study: Wilson intervals and steps to success by hand."""

import math

import numpy as np
import pytest

from gradflow.sweep._success import (
    comparison_sentence,
    rank,
    steps_to_success,
    success_fields,
    wilson_interval,
)

Z = 1.959964


def test_wilson_closed_forms():
    # k = 0: [0, z^2 / (n + z^2)]; k = n: [n / (n + z^2), 1]
    assert wilson_interval(0, 8) == pytest.approx([0.0, Z**2 / (8 + Z**2)])
    assert wilson_interval(8, 8) == pytest.approx([8 / (8 + Z**2), 1.0])
    # k = n/2 is symmetric about 1/2 with half-width z sqrt(n/4 + z^2/4) / (n + z^2)
    half = Z * math.sqrt(10 / 4 + Z**2 / 4) / (10 + Z**2)
    assert wilson_interval(5, 10) == pytest.approx([0.5 - half, 0.5 + half])
    with pytest.raises(ValueError, match="n must be an int >= 1"):
        wilson_interval(0, 0)
    with pytest.raises(ValueError, match="successes must be in"):
        wilson_interval(3, 2)


def test_steps_to_success_by_hand():
    acc = np.zeros((3, 40))
    acc[0, 10:] = 1.0  # window of 25 full from step 34 on
    acc[1, :] = 0.995
    acc[2, 30:] = np.nan  # diverged: absent steps count as misses
    got = steps_to_success(acc, 0.99, window=25)
    assert got[0] == 34 and got[1] == 24 and np.isnan(got[2])
    assert np.isnan(steps_to_success(acc[:, :10], 0.99, window=25)).all()


def test_success_fields_and_ranking():
    m = {
        "success": [1.0, 1.0, 0.0, None],
        "steps_to_success": [100.0, 300.0, None, None],
        "final_loss": [0.1, 0.3, 1.0, None],
    }
    f = success_fields(m, chance_loss=1.0)
    assert f["success_rate"] == 0.5 and f["successes"] == 2
    assert f["success_interval"] == pytest.approx(wilson_interval(2, 4))
    assert f["steps_to_success"] == 200.0 and f["final_loss_ratio"] == 0.3

    def entry(label, rate, k, n, loss, frac):
        return {
            "label": label,
            "lr": 0.1,
            "success_rate": rate,
            "success_interval": wilson_interval(k, n),
            "final_loss": {"median": loss},
            "clip_fraction": {"median": frac},
        }

    a = entry("a", 1.0, 8, 8, 0.2, 0.5)
    b = entry("b", 1.0, 8, 8, 0.1, 0.9)  # same success, lower loss: first
    c = entry("c", 1.0, 8, 8, 0.1, 0.2)  # same loss, less clipping: before b
    d = entry("d", 0.0, 0, 8, 0.01, 0.0)
    assert [e["label"] for e in rank([a, b, c, d])] == ["c", "b", "a", "d"]
    assert "intervals do not overlap" in comparison_sentence(a, d)
    assert "equal success" in comparison_sentence(c, b)
    e = entry("e", 7 / 8, 7, 8, 0.1, 0.1)
    assert "within the 95% intervals" in comparison_sentence(a, e)
