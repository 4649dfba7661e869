"""gf.models: forward passes and parameter counts against torch.nn peers."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import gradflow as gf

ROW = re.compile(r"^ (\w+) \(([^)]*)\)\s+(\([^)]*\))\s+([\d,]+)$")


def _rows(summary):
    """{layer name: (type, output shape, param count)} from a summary table."""
    rows = {}
    for line in summary.splitlines():
        m = ROW.match(line)
        if m:
            rows[m[1]] = (m[2], m[3], int(m[4].replace(",", "")))
    total = int(re.search(r"Total params: ([\d,]+)", summary)[1].replace(",", ""))
    return rows, total


def _numel(module):
    return sum(p.numel() for p in module.parameters())


def _to_torch_rnn(module, params):
    """Copy gradflow cell params (one dict or a tuple per layer) into ``module``."""
    layers = params if isinstance(params, tuple) else (params,)
    names = {
        "W_ih": "weight_ih",
        "W_hh": "weight_hh",
        "b_ih": "bias_ih",
        "b_hh": "bias_hh",
    }
    module.load_state_dict(
        {
            f"{names[k]}_l{i}": torch.tensor(np.array(v))
            for i, p in enumerate(layers)
            for k, v in p.items()
        }
    )


def _to_torch_linear(linear, dense):
    linear.load_state_dict(
        {
            "weight": torch.tensor(np.array(dense["weight"])),
            "bias": torch.tensor(np.array(dense["bias"])),
        }
    )


def test_sentiment_summary_counts_equal_torch():
    model = gf.models.sentiment_classifier(10_000)
    rows, total = _rows(model.summary(steps=200, batch_shape=(32,)))
    emb, lstm, dense = (
        torch.nn.Embedding(10_000, 32),
        torch.nn.LSTM(32, 100),
        torch.nn.Linear(100, 1),
    )
    assert rows["embedding"] == ("Embedding", "(200, 32, 32)", _numel(emb))
    assert rows["lstm"] == ("LSTM", "(32, 100)", _numel(lstm))
    assert rows["dense"] == ("Dense, sigmoid", "(32, 1)", _numel(dense))
    assert total == _numel(emb) + _numel(lstm) + _numel(dense) == 373_701
    params = model.init(jax.random.key(0))
    assert total == sum(a.size for a in jax.tree_util.tree_leaves(params))


def test_stacked_seq2seq_summary_counts_equal_torch():
    cell = gf.cells.stack([gf.cells.gru(16), gf.cells.gru(16)])
    model = gf.models.seq2seq(cell, 5, "softmax", input_size=3)
    summary = model.summary()
    rows, total = _rows(summary)
    gru = torch.nn.GRU(3, 16, num_layers=2)
    assert rows["gru_1"] == ("GRU", "(T, B, 16)", _numel(torch.nn.GRU(3, 16)))
    assert rows["gru_2"][1] == "(T, B, 16)"
    assert rows["gru_1"][2] + rows["gru_2"][2] == _numel(gru)
    assert rows["dense"] == (
        "Dense, softmax",
        "(T, B, 5)",
        _numel(torch.nn.Linear(16, 5)),
    )
    assert total == _numel(gru) + 85
    assert summary.startswith('Model: "seq2seq"')


def test_sentiment_forward_loss_and_grads_match_torch():
    vocab, dim, n, t, b = 50, 8, 10, 12, 4
    model = gf.models.sentiment_classifier(vocab, dim, n)
    params = model.init(jax.random.key(0))
    tokens = jax.random.randint(jax.random.key(1), (t, b), 0, vocab)
    labels = jnp.asarray([0.0, 1.0, 1.0, 0.0])

    emb, lstm, lin = (
        torch.nn.Embedding(vocab, dim),
        torch.nn.LSTM(dim, n),
        torch.nn.Linear(n, 1),
    )
    emb.load_state_dict(
        {"weight": torch.tensor(np.array(params["embedding"]["weight"]))}
    )
    _to_torch_rnn(lstm, params["cell"])
    _to_torch_linear(lin, params["dense"])
    out, _ = lstm(emb(torch.tensor(np.array(tokens), dtype=torch.long)))
    logits_t = lin(out[-1])
    loss_t = torch.nn.BCEWithLogitsLoss()(
        logits_t[:, 0], torch.tensor(np.array(labels))
    )
    loss_t.backward()

    probs = jax.jit(model.apply)(params, tokens)
    assert probs.shape == (b, 1)
    np.testing.assert_allclose(
        probs, torch.sigmoid(logits_t).detach().numpy(), rtol=1e-5, atol=1e-6
    )

    def loss(p):
        return gf.models.binary_cross_entropy(model.logits(p, tokens), labels)

    value, grads = jax.jit(jax.value_and_grad(loss))(params)
    np.testing.assert_allclose(value, loss_t.item(), rtol=1e-5)
    np.testing.assert_allclose(
        grads["embedding"]["weight"], emb.weight.grad.numpy(), rtol=1e-4, atol=1e-6
    )
    np.testing.assert_allclose(
        grads["cell"]["W_hh"], lstm.weight_hh_l0.grad.numpy(), rtol=1e-4, atol=1e-6
    )
    np.testing.assert_allclose(
        grads["dense"]["weight"], lin.weight.grad.numpy(), rtol=1e-4, atol=1e-6
    )


def test_seq2seq_softmax_matches_torch_every_step():
    cell = gf.cells.stack([gf.cells.rnn(6, "relu"), gf.cells.rnn(6, "relu")])
    model = gf.models.seq2seq(cell, 4, "softmax", input_size=3)
    params = model.init(jax.random.key(2))
    xs = jax.random.normal(jax.random.key(3), (9, 2, 3))
    rnn, lin = torch.nn.RNN(3, 6, 2, nonlinearity="relu"), torch.nn.Linear(6, 4)
    _to_torch_rnn(rnn, params["cell"])
    _to_torch_linear(lin, params["dense"])
    with torch.no_grad():
        ref = torch.softmax(lin(rnn(torch.tensor(np.array(xs)))[0]), dim=-1).numpy()
    out = jax.jit(model.apply)(params, xs)
    assert out.shape == (9, 2, 4)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.sum(-1), np.ones((9, 2)), rtol=1e-6)


def test_seq2vec_unbatched_logits_are_last_state_times_dense():
    model = gf.models.seq2vec(gf.cells.gru(5), 3, input_size=2)
    params = model.init(jax.random.key(4))
    xs = jax.random.normal(jax.random.key(5), (7, 2))
    out = jax.jit(model.apply)(params, xs)
    _, hs = gf.unroll(model.cell, params["cell"], xs)
    ref = np.asarray(params["dense"]["weight"]) @ np.asarray(hs[-1]) + np.asarray(
        params["dense"]["bias"]
    )
    assert out.shape == (3,)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)


def test_init_layout_and_keys():
    model = gf.models.seq2vec(gf.cells.lstm(5), 2, embedding=(11, 3))
    a, b = model.init(jax.random.key(0)), model.init(jax.random.key(0))
    c = model.init(jax.random.key(1))
    assert jax.tree_util.tree_map(jnp.shape, a) == {
        "embedding": {"weight": (11, 3)},
        "cell": {"W_ih": (20, 3), "W_hh": (20, 5), "b_ih": (20,), "b_hh": (20,)},
        "dense": {"weight": (2, 5), "bias": (2,)},
    }
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(jnp.array_equal, a, b))
    assert not np.array_equal(a["embedding"]["weight"], c["embedding"]["weight"])
    # nn.Linear's bound 1/sqrt(in_features)
    assert np.abs(np.asarray(a["dense"]["weight"])).max() <= 1 / np.sqrt(5)


def test_measurement_on_model_inputs_closed_form_at_last_step():
    """∂L/∂h_T of mean BCE on W h_T + b is (σ(z_b) − y_b)/B · w per sequence."""
    model = gf.models.sentiment_classifier(20, 4, 6)
    params = model.init(jax.random.key(6))
    tokens = jax.random.randint(jax.random.key(7), (8, 3), 0, 20)
    labels = jnp.asarray([1.0, 0.0, 1.0])

    def norms(p, tok):
        def loss_of_hs(hs):
            return gf.models.binary_cross_entropy(model.head(p, hs), labels)

        return gf.hidden_grad_norms(
            model.cell, p["cell"], model.inputs(p, tok), loss_of_hs
        ).norms

    got = jax.jit(norms)(params, tokens)
    assert got.shape == (8, 3)
    z = np.asarray(model.logits(params, tokens))[:, 0]
    w = np.asarray(params["dense"]["weight"])[0]
    ref = np.abs(1 / (1 + np.exp(-z)) - np.asarray(labels)) / 3 * np.linalg.norm(w)
    np.testing.assert_allclose(got[-1], ref, rtol=1e-5)


def test_binary_cross_entropy_is_stable_and_matches_torch():
    z = jnp.asarray([[100.0], [-100.0], [0.0], [30.0]])
    y = jnp.asarray([0.0, 1.0, 1.0, 1.0])
    per = jax.jit(jax.vmap(lambda a, b: gf.models.binary_cross_entropy(a, b)))(z, y)
    np.testing.assert_allclose(
        per, [100.0, 100.0, np.log(2.0), np.log1p(np.exp(-30.0))], rtol=1e-6
    )
    logits = jax.random.normal(jax.random.key(0), (5, 3)) * 4
    labels = jax.random.uniform(jax.random.key(1), (5, 3))
    ref = torch.nn.BCEWithLogitsLoss()(
        torch.tensor(np.array(logits)), torch.tensor(np.array(labels))
    )
    got = jax.jit(gf.models.binary_cross_entropy)(logits, labels)
    np.testing.assert_allclose(got, ref.item(), rtol=1e-6)
    assert np.isfinite(jax.grad(gf.models.binary_cross_entropy)(z, y)).all()


# --- bad input ---


def test_token_inputs_checked():
    model = gf.models.sentiment_classifier(10, 4, 3)
    params = model.init(jax.random.key(0))
    with pytest.raises(TypeError, match="xs must hold integer token ids"):
        model.apply(params, jnp.ones((5, 2)))
    with pytest.raises(
        ValueError, match=r"xs must hold token ids in \[0, 10\), got ids from 0 to 12"
    ):
        model.apply(params, jnp.asarray([[0, 12], [3, 4]]))
    with pytest.raises(ValueError, match=r"xs must have shape \(T, \*batch\)"):
        model.apply(params, jnp.zeros((), jnp.int32))


def test_float_inputs_checked():
    model = gf.models.seq2vec(gf.cells.rnn(3), 2, input_size=4)
    params = model.init(jax.random.key(0))
    with pytest.raises(ValueError, match="xs must have last axis input_size=4"):
        model.apply(params, jnp.ones((5, 2, 3)))
    with pytest.raises(TypeError, match="xs must have a floating dtype"):
        model.apply(params, jnp.ones((5, 2, 4), jnp.int32))


def test_constructor_arguments_checked():
    cell = gf.cells.lstm(4)
    with pytest.raises(ValueError, match="input_size must be given"):
        gf.models.seq2vec(cell, 2)
    with pytest.raises(ValueError, match="give input_size or embedding, not both"):
        gf.models.seq2vec(cell, 2, embedding=(5, 3), input_size=3)
    with pytest.raises(
        TypeError, match=r"embedding must be a pair \(vocab_size, dim\)"
    ):
        gf.models.seq2seq(cell, 2, embedding=5)
    with pytest.raises(ValueError, match="embedding dim must be an int >= 1, got 0"):
        gf.models.seq2seq(cell, 2, embedding=(5, 0))
    with pytest.raises(
        ValueError, match=r"activation must be one of \('sigmoid', 'softmax'\)"
    ):
        gf.models.seq2vec(cell, 2, "relu", input_size=3)
    with pytest.raises(ValueError, match="out_features must be an int >= 1, got -1"):
        gf.models.seq2vec(cell, -1, input_size=3)
    with pytest.raises(TypeError, match="cell must be a gradflow Cell"):
        gf.models.seq2vec("lstm", 1, input_size=3)
    with pytest.raises(ValueError, match="hidden_size must be an int >= 1"):
        gf.models.sentiment_classifier(100, hidden_size=0)


def test_loss_labels_checked():
    with pytest.raises(ValueError, match=r"labels must have shape \(4, 1\)"):
        gf.models.binary_cross_entropy(jnp.zeros((4, 1)), jnp.zeros((3,)))
    with pytest.raises(TypeError, match="logits must have a floating dtype"):
        gf.models.binary_cross_entropy(jnp.zeros((4,), jnp.int32), jnp.zeros((4,)))
