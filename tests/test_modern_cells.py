"""LRU, minGRU, minLSTM and the selective SSM: their equations by hand, their
reference init, the parallel scan against the sequential one, a peer package
and every bad input."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradflow as gf

H = 5


def _cells():
    return {
        "lru": gf.cells.lru(H, state_size=4, r_min=0.4, r_max=0.95),
        "min_gru": gf.cells.min_gru(H),
        "min_lstm": gf.cells.min_lstm(H),
        "selective_ssm": gf.cells.selective_ssm(H, state_size=3),
    }


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _numpy_loop(kind, p, xs, s0):
    """Each cell's equations as the papers write them, one step at a time."""
    p = {k: np.asarray(v) for k, v in p.items()}
    hs, s = [], s0
    for x in np.asarray(xs):
        if kind == "lru":
            lam = np.exp(-np.exp(p["nu_log"]) + 1j * np.exp(p["theta_log"]))
            b = (p["B_re"] + 1j * p["B_im"]) * np.exp(p["gamma_log"])[:, None]
            s = lam * s + b @ x
            hs.append(((p["C_re"] + 1j * p["C_im"]) @ s).real + p["D"] * x)
        elif kind == "min_gru":
            z = _sigmoid(p["W_z"] @ x + p["b_z"])
            s = (1 - z) * s + z * (p["W_h"] @ x + p["b_h"])
            hs.append(s)
        elif kind == "min_lstm":
            f = _sigmoid(p["W_f"] @ x + p["b_f"])
            i = _sigmoid(p["W_i"] @ x + p["b_i"])
            s = f / (f + i) * s + i / (f + i) * (p["W_h"] @ x + p["b_h"])
            hs.append(s)
        else:
            delta = np.log1p(np.exp(p["W_delta"] @ x + p["b_delta"]))
            a = -np.exp(p["A_log"])
            bt, ct = p["W_B"] @ x, p["W_C"] @ x
            s = np.exp(delta[:, None] * a) * s + (delta * x)[:, None] * bt[None, :]
            hs.append(s @ ct + p["D"] * x)
    return np.stack(hs), s


def _carry(kind, cell, s0):
    if kind == "lru":
        return gf.cells.LRUCarry(jnp.asarray(s0.real), jnp.asarray(s0.imag))
    return type(cell.initial_carry())(jnp.asarray(s0))


@pytest.mark.parametrize("kind", list(_cells()))
@pytest.mark.parametrize("parallel", [True, False])
def test_equations_by_hand(kind, parallel, x64):
    cell = _cells()[kind]
    if not parallel:
        cell = cell._replace(linear=None)
    params = cell.init(jax.random.key(0), H, jnp.float64)
    xs = jax.random.normal(jax.random.key(1), (12, H), jnp.float64)
    shape = jax.tree_util.tree_leaves(cell.initial_carry())[0].shape
    rng = np.random.default_rng(0)
    s0 = rng.normal(size=shape)
    if kind == "lru":
        s0 = s0 + 1j * rng.normal(size=shape)
    ref_hs, ref_s = _numpy_loop(kind, params, xs, s0)
    carry, hs = jax.jit(lambda p, x, c: gf.unroll(cell, p, x, c))(
        params, xs, _carry(kind, cell, s0)
    )
    np.testing.assert_allclose(hs, ref_hs, rtol=1e-10, atol=1e-12)
    got_s = carry.re + 1j * carry.im if kind == "lru" else carry[0]
    np.testing.assert_allclose(got_s, ref_s, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", list(_cells()))
def test_parallel_equals_sequential(kind):
    """Associative scan vs lax.scan of recur in float32: outputs, final carry
    and gradients, batched, under jit; and remat chunks that do not divide T
    (float64 agreement is in test_equations_by_hand)."""
    cell = _cells()[kind]
    params = cell.init(jax.random.key(2), H)
    xs = jax.random.normal(jax.random.key(3), (20, 2, H))

    def run(c):
        def loss(p):
            carry, hs = gf.unroll(c, p, xs)
            return jnp.sum(hs**2), (carry, hs)

        return jax.jit(jax.value_and_grad(loss, has_aux=True))(params)

    ref = run(cell._replace(linear=None))
    chunked = jax.jit(lambda p: gf.unroll(cell, p, xs, remat=7))(params)
    got = (run(cell), chunked)
    refs = (ref, (ref[0][1][0], ref[0][1][1]))
    for a, b in zip(
        jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(refs), strict=True
    ):
        scale = float(jnp.max(jnp.abs(b)))
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6 * scale)


def test_lru_init_matches_the_reference(x64):
    """|λ| on the ring [r_min, r_max], phase in [0, max_phase], γ = sqrt(1−|λ|²),
    B ~ N(0, 1/(2H)), C ~ N(0, 1/S), D ~ N(0, 1) as minimal-LRU draws them."""
    h, s = 64, 2048
    cell = gf.cells.lru(h, state_size=s, r_min=0.9, r_max=0.99, max_phase=0.5)
    p = cell.init(jax.random.key(4), h, jnp.float64)
    mag = np.exp(-np.exp(np.asarray(p["nu_log"])))
    phase = np.exp(np.asarray(p["theta_log"]))
    assert mag.min() >= 0.9 and mag.max() <= 0.99
    assert phase.min() >= 0.0 and phase.max() <= 0.5
    # uniform in |λ|² on the ring: mean of |λ|² is the middle of [0.81, 0.9801]
    assert abs(np.mean(mag**2) - (0.81 + 0.9801) / 2) < 3 * 0.049 / math.sqrt(s)
    np.testing.assert_allclose(
        np.exp(np.asarray(p["gamma_log"])), np.sqrt(1 - mag**2), rtol=1e-12
    )
    for name, var in (("B_re", 1 / (2 * h)), ("B_im", 1 / (2 * h)), ("C_re", 1 / s)):
        assert abs(np.var(np.asarray(p[name])) / var - 1) < 0.05
    assert abs(np.var(np.asarray(p["D"])) - 1) < 0.5
    assert p["B_re"].shape == (s, h) and p["C_im"].shape == (h, s)


def test_selective_ssm_init_is_mambas():
    n = 8
    p = gf.cells.selective_ssm(64, state_size=n).init(jax.random.key(5), 64)
    np.testing.assert_allclose(np.exp(p["A_log"][3]), np.arange(1, n + 1), rtol=1e-6)
    step = np.log1p(np.exp(np.asarray(p["b_delta"])))
    assert step.min() >= 1e-3 * (1 - 1e-5) and step.max() <= 0.1 * (1 + 1e-5)
    np.testing.assert_array_equal(p["D"], np.ones(64))


@pytest.mark.parametrize("kind", ["min_gru", "min_lstm"])
def test_min_cells_match_mingru_pytorch(kind):
    """minGRU-pytorch with the same weights: its log-space parallel mode and its
    sequential mode equal ours with ``candidate="g"`` and zero biases."""
    torch = pytest.importorskip("torch")
    mod_name = "minGRU" if kind == "min_gru" else "minLSTM"
    pkg = pytest.importorskip(f"minGRU_pytorch.{mod_name}")
    torch.manual_seed(0)
    module = getattr(pkg, mod_name)(H).double()
    w = (
        module.to_hidden_and_gate.weight
        if kind == "min_gru"
        else (module.to_hidden_and_f_i_gate.weight)
    )
    w = np.asarray(w.detach().numpy())
    blocks = np.split(w, 2 if kind == "min_gru" else 3)
    names = ("W_h", "W_z") if kind == "min_gru" else ("W_h", "W_f", "W_i")
    params = {
        n: jnp.asarray(b, jnp.float32) for n, b in zip(names, blocks, strict=True)
    }
    for n in names:
        params["b" + n[1:]] = jnp.zeros(H, jnp.float32)
    cell = getattr(gf.cells, kind)(H, candidate="g")
    xs = np.random.default_rng(1).normal(size=(1, 40, H))
    h0 = np.abs(np.random.default_rng(2).normal(size=(1, 1, H))) + 0.1
    with torch.no_grad():
        par = module(torch.tensor(xs), torch.tensor(h0)).numpy()[0]
        h, seq = torch.tensor(h0), []
        for t in range(xs.shape[1]):
            h = module(torch.tensor(xs[:, t : t + 1]), h)
            seq.append(h.numpy()[0, 0])
    x = jnp.asarray(xs[0], jnp.float32)

    def ours(start):
        carry = type(cell.initial_carry())(jnp.asarray(start, jnp.float32))
        return gf.unroll(cell, params, x, carry)[1]

    # its sequential mode starts from prev_hidden; its parallel minLSTM starts
    # from g(prev_hidden) = prev_hidden + 0.5 (its log_g of the start state)
    np.testing.assert_allclose(ours(h0[0, 0]), np.stack(seq), rtol=2e-5, atol=1e-6)
    start = h0[0, 0] if kind == "min_gru" else h0[0, 0] + 0.5
    np.testing.assert_allclose(ours(start), par, rtol=2e-5, atol=1e-6)


def test_registered_by_name():
    for kind in ("lru", "min_gru", "min_lstm", "selective_ssm"):
        cell = gf.cells.make(kind, 4)
        assert cell.kind == kind and cell.linear is not None


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: gf.cells.lru(4, r_min=0.9, r_max=0.9), "r_min must be < r_max"),
        (lambda: gf.cells.lru(4, r_min=0.95, r_max=0.9), "r_min=0.95 and r_max=0.9"),
        (lambda: gf.cells.lru(4, r_max=1.01), "r_max must be <= 1"),
        (lambda: gf.cells.lru(4, r_min=-0.1), "r_min must be >= 0"),
        (lambda: gf.cells.lru(4, max_phase=0.0), "max_phase must be > 0"),
        (lambda: gf.cells.lru(4, state_size=0), "state_size must be an int >= 1"),
        (lambda: gf.cells.selective_ssm(4, state_size=0), "state_size must be"),
        (lambda: gf.cells.min_gru(0), "hidden_size must be an int >= 1"),
        (lambda: gf.cells.min_lstm(4, candidate="h"), "candidate must be one of"),
        (lambda: gf.cells.lru(4, gain=2.0), "gain must be 1.0 for a lru cell"),
        (
            lambda: gf.cells.selective_ssm(4, recurrent_init="orthogonal"),
            "recurrent_init must be 'torch' for a selective_ssm",
        ),
    ],
)
def test_bad_options(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_bad_types():
    with pytest.raises(TypeError, match="r_max must be a real number"):
        gf.cells.lru(4, r_max=1j)
    with pytest.raises(TypeError, match="dtype must be a real floating dtype"):
        gf.cells.lru(4).init(jax.random.key(0), 4, jnp.complex64)
    cell = gf.cells.lru(4)
    params = cell.init(jax.random.key(0), 4)
    bad = {**params, "nu_log": params["nu_log"].astype(jnp.complex64)}
    with pytest.raises(TypeError, match=r"params\['nu_log'\] must be floating"):
        gf.unroll(cell, bad, jnp.ones((3, 4)))


@pytest.mark.parametrize("kind", ["lru", "selective_ssm"])
def test_input_width_is_the_hidden_size(kind):
    cell = gf.cells.make(kind, 4)
    with pytest.raises(ValueError, match=r"hidden_size=4.*input_size=3"):
        cell.init(jax.random.key(0), 3)
    params = cell.init(jax.random.key(0), 4)
    with pytest.raises(ValueError, match=r"input_size=4.*got shape \(3, 5\)"):
        gf.unroll(cell, params, jnp.ones((3, 5)))
