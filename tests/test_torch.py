"""Parity with torch.nn.RNN/LSTM/GRU and the torch loaders."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import gradflow as gf

T, D, N = 12, 5, 7
MODULES = {
    "rnn_tanh": lambda layers: torch.nn.RNN(D, N, layers, nonlinearity="tanh"),
    "rnn_relu": lambda layers: torch.nn.RNN(D, N, layers, nonlinearity="relu"),
    "lstm": lambda layers: torch.nn.LSTM(D, N, layers),
    "gru": lambda layers: torch.nn.GRU(D, N, layers),
}


def _final_h(cell, carry):
    """Stack the final hidden (and cell) states like torch's ``h_n`` (``c_n``)."""
    layers = carry if cell.kind == "stack" else (carry,)
    return [
        np.stack([np.asarray(field) for field in fields])
        for fields in zip(*layers, strict=True)
    ]


def _torch_final(h_n):
    return [t.detach().numpy() for t in (h_n if isinstance(h_n, tuple) else (h_n,))]


@pytest.mark.parametrize("name", list(MODULES))
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("batch", [(), (3,)], ids=["unbatched", "batched"])
def test_parity_with_torch(name, layers, batch):
    torch.manual_seed(layers + 10 * len(batch))
    module = MODULES[name](layers)
    x = torch.randn(T, *batch, D)
    with torch.no_grad():
        out, h_n = module(x)

    cell, params = gf.from_torch(module)
    assert cell.kind == ("stack" if layers > 1 else name.split("_")[0])
    carry, hs = jax.jit(lambda p, xs: gf.unroll(cell, p, xs))(
        params, jnp.asarray(x.numpy())
    )
    np.testing.assert_allclose(hs, out.numpy(), rtol=1e-5, atol=1e-5)
    for ours, theirs in zip(_final_h(cell, carry), _torch_final(h_n), strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["rnn_tanh", "lstm", "gru"])
def test_parity_with_initial_carry(name):
    torch.manual_seed(1)
    module = MODULES[name](2)
    x = torch.randn(T, 2, D)
    h0 = torch.randn(2, 2, N)
    c0 = torch.randn(2, 2, N)
    with torch.no_grad():
        out, _ = module(x, (h0, c0) if name == "lstm" else h0)

    cell, params = gf.from_torch(module)
    carry = tuple(
        gf.cells.LSTMCarry(jnp.asarray(h0[k].numpy()), jnp.asarray(c0[k].numpy()))
        if name == "lstm"
        else type(cell.layers[k].initial_carry())(jnp.asarray(h0[k].numpy()))
        for k in range(2)
    )
    _, hs = jax.jit(lambda p, xs, c: gf.unroll(cell, p, xs, c))(
        params, jnp.asarray(x.numpy()), carry
    )
    np.testing.assert_allclose(hs, out.numpy(), rtol=1e-5, atol=1e-5)


def test_batch_first_module_with_transposed_input():
    """Issue 10: a batch-first feed ran silently with other numbers (0.41 off);
    from_torch now warns, and the transposed feed matches torch."""
    torch.manual_seed(2)
    module = torch.nn.GRU(D, N, batch_first=True)
    x = torch.randn(4, T, D)
    with torch.no_grad():
        out, _ = module(x)
    with pytest.warns(UserWarning, match=r"batch_first.*x\.swapaxes\(0, 1\)"):
        cell, params = gf.from_torch(module)
    run = jax.jit(lambda p, xs: gf.unroll(cell, p, xs)[1])
    hs = run(params, jnp.asarray(x.numpy()).swapaxes(0, 1))
    np.testing.assert_allclose(hs.swapaxes(0, 1), out.numpy(), rtol=1e-5, atol=1e-5)
    # what the warning is for: the untransposed feed runs and is wrong
    wrong = run(params, jnp.asarray(x.numpy()))
    assert np.max(np.abs(np.asarray(wrong) - out.numpy())) > 0.1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gf.from_torch(torch.nn.GRU(D, N))  # time-major: no warning


@pytest.mark.parametrize(
    ("module", "kind"),
    [
        (lambda: torch.nn.RNNCell(D, N, nonlinearity="relu"), "rnn"),
        (lambda: torch.nn.LSTMCell(D, N), "lstm"),
        (lambda: torch.nn.GRUCell(D, N), "gru"),
    ],
)
def test_torch_cell_modules_one_step(module, kind):
    torch.manual_seed(3)
    module = module()
    x = torch.randn(3, D)
    with torch.no_grad():
        ref = module(x)
    ref = ref[0] if isinstance(ref, tuple) else ref
    cell, params = gf.from_torch(module)
    assert cell.kind == kind
    _, h = jax.jit(lambda p, x: cell.step(p, cell.initial_carry((3,)), x))(
        params, jnp.asarray(x.numpy())
    )
    np.testing.assert_allclose(h, ref.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", list(MODULES))
def test_round_trip_through_state_dict(name):
    """torch → gradflow → a fresh torch module gives the same weights and outputs."""
    torch.manual_seed(4)
    src = MODULES[name](2)
    cell, params = gf.from_torch(src)
    dst = MODULES[name](2)
    names = {
        "W_ih": "weight_ih",
        "W_hh": "weight_hh",
        "b_ih": "bias_ih",
        "b_hh": "bias_hh",
    }
    sd = {
        f"{names[k]}_l{layer}": torch.tensor(np.array(v))
        for layer, p in enumerate(params)
        for k, v in p.items()
    }
    dst.load_state_dict(sd)
    for key, value in src.state_dict().items():
        assert torch.equal(dst.state_dict()[key], value), key
    x = torch.randn(T, 2, D)
    with torch.no_grad():
        assert torch.equal(src(x)[0], dst(x)[0])

    cell2, params2 = gf.from_state_dict(
        {f"rnn.{k}": v.numpy() for k, v in src.state_dict().items()},
        name.split("_")[0],
        activation=name.split("_")[-1] if "rnn" in name else "tanh",
        prefix="rnn.",
    )
    assert cell2.kind == cell.kind and cell2.hidden_size == N
    assert jax.tree_util.tree_all(
        jax.tree_util.tree_map(
            lambda a, b: bool(jnp.array_equal(a, b)), params, params2
        )
    )


def test_relu_activation_is_carried_over():
    torch.manual_seed(5)
    module = torch.nn.RNN(D, N, nonlinearity="relu")
    cell, params = gf.from_torch(module)
    x = jnp.asarray(torch.randn(T, D).numpy())
    _, hs = jax.jit(lambda p, xs: gf.unroll(cell, p, xs))(params, x)
    assert float(jnp.min(hs)) == 0.0  # a tanh RNN would go negative


def test_bias_false_means_zero_biases():
    torch.manual_seed(6)
    module = torch.nn.LSTM(D, N, bias=False)
    x = torch.randn(T, 2, D)
    with torch.no_grad():
        out, _ = module(x)
    cell, params = gf.from_torch(module)
    np.testing.assert_array_equal(params["b_ih"], np.zeros(4 * N, np.float32))
    _, hs = jax.jit(lambda p, xs: gf.unroll(cell, p, xs))(
        params, jnp.asarray(x.numpy())
    )
    np.testing.assert_allclose(hs, out.numpy(), rtol=1e-5, atol=1e-5)


def test_rejects_bidirectional_and_projection():
    with pytest.raises(ValueError, match="unidirectional"):
        gf.from_torch(torch.nn.LSTM(D, N, bidirectional=True))
    with pytest.raises(ValueError, match="proj_size"):
        gf.from_torch(torch.nn.LSTM(D, N, proj_size=3))
    with pytest.raises(ValueError, match="_reverse"):
        gf.from_state_dict(torch.nn.GRU(D, N, bidirectional=True).state_dict(), "gru")


def test_rejects_other_modules():
    with pytest.raises(TypeError, match=r"module must be a torch\.nn\.RNN"):
        gf.from_torch(torch.nn.Linear(3, 4))
    with pytest.raises(TypeError, match=r"module must be a torch\.nn\.RNN"):
        gf.from_torch("lstm")
    # a bare RNNCellBase (none of the three cells) and an RNNBase whose mode
    # torch would not build: both are named, not loaded as something else
    bare = torch.nn.RNNCellBase(D, N, bias=True, num_chunks=2)
    with pytest.raises(
        TypeError, match=r"RNNCell, LSTMCell or GRUCell, got RNNCellBase"
    ):
        gf.from_torch(bare)
    odd = torch.nn.RNN(D, N)
    odd.mode = "RNN_SIGMOID"
    with pytest.raises(ValueError, match="got mode 'RNN_SIGMOID'"):
        gf.from_torch(odd)


def test_state_dict_errors_name_the_key():
    sd = torch.nn.LSTM(D, N, 2).state_dict()
    with pytest.raises(ValueError, match="kind must be one of"):
        gf.from_state_dict(sd, "transformer")
    with pytest.raises(ValueError, match=r"weight_hh_l0 must have shape \(3\*N, N\)"):
        gf.from_state_dict(sd, "gru")
    with pytest.raises(ValueError, match=r"set prefix="):
        gf.from_state_dict({f"enc.{k}": v for k, v in sd.items()}, "lstm")
    with pytest.raises(ValueError, match="bias_hh_l1"):
        gf.from_state_dict({k: v for k, v in sd.items() if k != "bias_hh_l1"}, "lstm")
    with pytest.raises(TypeError, match="state_dict must be a mapping"):
        gf.from_state_dict([1, 2], "lstm")
    with pytest.raises(ValueError, match="activation must be one of"):
        gf.from_state_dict(torch.nn.RNN(D, N).state_dict(), "rnn", activation="gelu")


def test_state_dict_shape_dtype_and_key_errors():
    """Each malformed entry is named by its key (numpy arrays, no torch needed)."""
    rng = np.random.default_rng(0)
    sd = {k: v.numpy() for k, v in torch.nn.GRU(D, N, 2).state_dict().items()}
    with pytest.raises(TypeError, match="prefix must be a str, got int"):
        gf.from_state_dict(sd, "gru", prefix=0)
    with pytest.raises(ValueError, match="LSTM with proj_size=0, got weight_hr"):
        gf.from_state_dict({**sd, "weight_hr_l0": rng.normal(size=(3, N))}, "gru")
    bad = {**sd, "weight_ih_l0": sd["weight_ih_l0"][:-1]}
    with pytest.raises(ValueError, match=r"weight_ih_l0 must have shape \(21, D\)"):
        gf.from_state_dict(bad, "gru")
    # layer 1 must read layer 0's N = 7 outputs
    bad = {**sd, "weight_ih_l1": rng.normal(size=(3 * N, N + 1))}
    with pytest.raises(ValueError, match=r"weight_ih_l1 must have 7 columns"):
        gf.from_state_dict(bad, "gru")
    bad = {**sd, "bias_hh_l1": sd["bias_hh_l1"][:N]}
    with pytest.raises(ValueError, match=r"bias_hh_l1 must have shape \(21,\)"):
        gf.from_state_dict(bad, "gru")
    bad = {k: v for k, v in sd.items() if k != "weight_hh_l1"}
    with pytest.raises(ValueError, match="must hold 'weight_hh_l1', it is missing"):
        gf.from_state_dict(bad, "gru")
    bad = {**sd, "weight_hh_l0": sd["weight_hh_l0"].astype(np.int32)}
    with pytest.raises(TypeError, match=r"\['weight_hh_l0'\] must be floating"):
        gf.from_state_dict(bad, "gru")
    # the same numpy dict, well formed, loads: two layers of width N
    cell, params = gf.from_state_dict(sd, "gru")
    assert cell.kind == "stack"
    np.testing.assert_array_equal(params[1]["W_ih"], sd["weight_ih_l1"])


@pytest.mark.parametrize("name", ["rnn_tanh", "gru"])
def test_gradients_match_torch_autograd(name):
    """d/dparams of sum(outputs²) through two layers, against torch autograd."""
    torch.manual_seed(7)
    module = MODULES[name](2)
    x = torch.randn(T, 3, D)
    out, _ = module(x)
    (out**2).sum().backward()

    cell, params = gf.from_torch(module)

    def loss(p, xs):
        return jnp.sum(gf.unroll(cell, p, xs)[1] ** 2)

    grads = jax.jit(jax.grad(loss))(params, jnp.asarray(x.numpy()))
    names = {
        "W_ih": "weight_ih",
        "W_hh": "weight_hh",
        "b_ih": "bias_ih",
        "b_hh": "bias_hh",
    }
    for layer, g in enumerate(grads):
        for k, v in g.items():
            ref = getattr(module, f"{names[k]}_l{layer}").grad.numpy()
            np.testing.assert_allclose(
                v, ref, rtol=1e-4, atol=1e-5, err_msg=f"{k}_l{layer}"
            )
