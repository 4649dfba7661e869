"""Recurrent models with readouts: (embedding →) cell → dense, as pure functions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .. import _names
from .._checks import check_choice, check_int, is_concrete
from .._unroll import check_cell, unroll
from ..cells import Cell, lstm

Params = dict[str, Any]

#: A model's output activation (not a cell's nonlinearity, ``_names.ACTIVATIONS``).
_OUTPUTS: dict[str | None, Callable[[jax.Array], jax.Array]] = {
    None: lambda z: z,
    "sigmoid": jax.nn.sigmoid,
    "softmax": lambda z: jax.nn.softmax(z, axis=-1),
}


class Model(NamedTuple):
    """``xs → [embedding] → cell → dense → activation``, as pure functions.

    Params are a nested plain dict::

        {"embedding": {"weight": (vocab, dim)},          # token models only
         "cell": <the cell's params>,                     # PyTorch layout
         "dense": {"weight": (out, N), "bias": (out,)}}   # like nn.Linear

    Attributes:
        name: shown by :meth:`summary`.
        cell: the recurrent cell (a stack for several layers).
        readout: ``"last"`` (sequence → vector: the last hidden state feeds the
            dense layer) or ``"all"`` (sequence → sequence: every state does).
        out_features: width of the dense layer.
        activation: ``None`` (logits), ``"sigmoid"`` or ``"softmax"`` (last axis).
        input_size: the cell's input width ``D`` (the embedding dim for tokens).
        vocab_size: number of token ids, or ``None`` for float inputs.
        init: ``init(key, dtype=float32) -> params``.
        inputs: ``inputs(params, xs) -> (T, *batch, D)``, the cell's input: the
            embedded tokens, or ``xs`` itself. Feed it with ``params["cell"]``
            to a measurement (``gf.hidden_grad_norms(model.cell, ...)``).
        head: ``head(params, hs (T, *batch, N)) -> logits``, the readout before
            the activation.

    Sequences are time-major: float ``xs (T, *batch, D)`` or int token ids
    ``(T, *batch)``. ``"last"`` means the last step: pad sequences at the
    front (Keras's ``pad_sequences`` default) so it is the last real token.
    """

    name: str
    cell: Cell
    readout: str
    out_features: int
    activation: str | None
    input_size: int
    vocab_size: int | None
    init: Callable[..., Params]
    inputs: Callable[[Params, jax.Array], jax.Array]
    head: Callable[[Params, jax.Array], jax.Array]

    def logits(self, params: Params, xs: jax.Array, carry: Any = None) -> jax.Array:
        """Pre-activation outputs: ``(*batch, out)`` (``"last"``) or
        ``(T, *batch, out)`` (``"all"``)."""
        _, hs = unroll(self.cell, params["cell"], self.inputs(params, xs), carry)
        return self.head(params, hs)

    def apply(self, params: Params, xs: jax.Array, carry: Any = None) -> jax.Array:
        """Outputs after the activation (probabilities for sigmoid/softmax)."""
        return _OUTPUTS[self.activation](self.logits(params, xs, carry))

    def summary(
        self, steps: int | None = None, batch_shape: tuple[int, ...] | None = None
    ) -> str:
        """A Keras-style table: each layer's output shape and parameter count.

        Counts are those of the equivalent PyTorch modules (``nn.Embedding``,
        ``nn.RNN/LSTM/GRU`` with both biases, ``nn.Linear``). Shapes are
        time-major; ``T`` and ``B`` stand for sizes not given.

        Args:
            steps: sequence length to show, or ``None``.
            batch_shape: batch shape to show, or ``None`` for one batch axis.
        """
        return _summary(self, steps, batch_shape)


def seq2vec(
    cell: Cell,
    out_features: int,
    activation: str | None = None,
    *,
    embedding: tuple[int, int] | None = None,
    input_size: int | None = None,
    name: str = "seq2vec",
) -> Model:
    """Sequence → vector: the last hidden state through a dense layer.

    Args:
        cell: the recurrent cell, e.g. ``gf.cells.lstm(100)``.
        out_features: outputs of the dense layer.
        activation: ``None``, ``"sigmoid"`` or ``"softmax"``.
        embedding: ``(vocab_size, dim)`` for int token inputs, or ``None``.
        input_size: width of float inputs (required without ``embedding``).
        name: the model's name in :meth:`Model.summary`.

    Example:
        >>> model = gf.models.seq2vec(gf.cells.gru(64), 10, "softmax", input_size=8)
        >>> params = model.init(jax.random.key(0))
        >>> probs = model.apply(params, xs)  # xs (T, B, 8) -> (B, 10)
    """
    return _model(cell, out_features, activation, embedding, input_size, name, "last")


def seq2seq(
    cell: Cell,
    out_features: int,
    activation: str | None = None,
    *,
    embedding: tuple[int, int] | None = None,
    input_size: int | None = None,
    name: str = "seq2seq",
) -> Model:
    """Sequence → sequence: every hidden state through the same dense layer.

    Arguments as for :func:`seq2vec`; outputs are ``(T, *batch, out_features)``.
    """
    return _model(cell, out_features, activation, embedding, input_size, name, "all")


def sentiment_classifier(
    vocab_size: int,
    embed_dim: int = 32,
    hidden_size: int = 100,
    **cell_options: Any,
) -> Model:
    """The classic ``Embedding(vocab, 32) → LSTM(100) → Dense(1, sigmoid)``.

    Train it on :func:`binary_cross_entropy` of :meth:`Model.logits`.

    Args:
        vocab_size: number of token ids.
        embed_dim: embedding width.
        hidden_size: LSTM width.
        **cell_options: passed to :func:`gradflow.cells.lstm` (e.g.
            ``forget_bias=1.0``).

    Example:
        >>> model = gf.models.sentiment_classifier(10_000)
        >>> print(model.summary(steps=200))
    """
    return seq2vec(
        lstm(hidden_size, **cell_options),
        1,
        "sigmoid",
        embedding=(vocab_size, embed_dim),
        name="sentiment_classifier",
    )


def _model(cell, out_features, activation, embedding, input_size, name, readout):
    check_cell(cell)
    out_features = check_int("out_features", out_features)
    if activation is not None:
        check_choice("activation", activation, tuple(k for k in _OUTPUTS if k))
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    if embedding is not None:
        if input_size is not None:
            raise ValueError(
                "give input_size or embedding, not both: with an embedding the "
                f"cell's input width is its dim, got input_size={input_size}"
            )
        if not isinstance(embedding, tuple | list) or len(embedding) != 2:
            raise TypeError(
                f"embedding must be a pair (vocab_size, dim), got {embedding!r}"
            )
        vocab = check_int("embedding vocab_size", embedding[0])
        input_size = check_int("embedding dim", embedding[1])
    else:
        if input_size is None:
            raise ValueError(
                "input_size must be given for float inputs (or pass "
                "embedding=(vocab_size, dim) for token ids), got None"
            )
        vocab = None
        input_size = check_int("input_size", input_size)
    n = cell.hidden_size

    def init(key: jax.Array, dtype=jnp.float32) -> Params:
        k_emb, k_cell, k_w, k_b = jax.random.split(key, 4)
        bound = 1.0 / np.sqrt(n)  # nn.Linear: U(-1/sqrt(in), 1/sqrt(in))
        params = {
            "cell": cell.init(k_cell, input_size, dtype),
            "dense": {
                "weight": jax.random.uniform(
                    k_w, (out_features, n), dtype, -bound, bound
                ),
                "bias": jax.random.uniform(k_b, (out_features,), dtype, -bound, bound),
            },
        }
        if vocab is not None:  # nn.Embedding: N(0, 1)
            params = {
                "embedding": {
                    "weight": jax.random.normal(k_emb, (vocab, input_size), dtype)
                },
                **params,
            }
        return params

    def inputs(params: Params, xs: jax.Array) -> jax.Array:
        if vocab is None:
            return xs
        _check_tokens(xs, vocab)
        return jnp.take(params["embedding"]["weight"], xs, axis=0)

    def head(params: Params, hs: jax.Array) -> jax.Array:
        h = hs[-1] if readout == "last" else hs
        y = jnp.einsum("...n,on->...o", h, params["dense"]["weight"])
        return y + jnp.broadcast_to(params["dense"]["bias"], y.shape)

    return Model(
        name=name,
        cell=cell,
        readout=readout,
        out_features=out_features,
        activation=activation,
        input_size=input_size,
        vocab_size=vocab,
        init=init,
        inputs=inputs,
        head=head,
    )


def _check_tokens(xs: Any, vocab: int) -> None:
    shape = getattr(xs, "shape", None)
    dtype = getattr(xs, "dtype", None)
    if shape is None or dtype is None:
        raise TypeError(
            f"xs must be an int array of token ids (T, *batch), got {type(xs).__name__}"
        )
    if not np.issubdtype(np.dtype(dtype), np.integer):
        raise TypeError(
            f"xs must hold integer token ids (T, *batch) for a model with an "
            f"embedding, got dtype {dtype}"
        )
    if len(shape) < 1 or shape[0] < 1:
        raise ValueError(
            f"xs must have shape (T, *batch) with T >= 1, got {tuple(shape)}"
        )
    if is_concrete(xs):
        values = np.asarray(xs)
        # jnp.take would silently clamp an out-of-range id
        if values.min() < 0 or values.max() >= vocab:
            raise ValueError(
                f"xs must hold token ids in [0, {vocab}), got ids from "
                f"{values.min()} to {values.max()}"
            )


def _count(tree: Any) -> int:
    return sum(int(np.prod(a.shape)) for a in jax.tree_util.tree_leaves(tree))


def _summary(model: Model, steps, batch_shape) -> str:
    if steps is not None:
        steps = check_int("steps", steps)
    if batch_shape is None:
        batch = ("B",)
    else:
        batch = tuple(check_int("batch_shape entry", b) for b in batch_shape)
    t = "T" if steps is None else steps
    shapes = jax.eval_shape(model.init, jax.random.key(0))

    def shape(*dims):
        return "(" + ", ".join(str(d) for d in dims) + ")"

    rows = []
    if model.vocab_size is not None:
        rows.append(
            (
                "embedding (Embedding)",
                shape(t, *batch, model.input_size),
                _count(shapes["embedding"]),
            )
        )
    layers = model.cell.layers or (model.cell,)
    layer_params = shapes["cell"] if model.cell.layers else (shapes["cell"],)
    seen: dict[str, int] = {}
    for i, (layer, p) in enumerate(zip(layers, layer_params, strict=True)):
        kind = layer.kind
        seen[kind] = seen.get(kind, 0) + 1
        label = kind if len(layers) == 1 else f"{kind}_{seen[kind]}"
        top = i == len(layers) - 1
        dims = (
            (*batch, layer.hidden_size)
            if top and model.readout == "last"
            else (t, *batch, layer.hidden_size)
        )
        torch_name = getattr(_names.CELLS.get(kind), "torch_name", None) or kind
        rows.append((f"{label} ({torch_name})", shape(*dims), _count(p)))
    out_dims = (*batch, model.out_features)
    if model.readout == "all":
        out_dims = (t, *batch, model.out_features)
    kind = "Dense" if model.activation is None else f"Dense, {model.activation}"
    rows.append((f"dense ({kind})", shape(*out_dims), _count(shapes["dense"])))

    total = sum(r[2] for r in rows)
    widths = (
        max(28, *(len(r[0]) + 2 for r in rows)),
        max(26, *(len(r[1]) + 2 for r in rows)),
    )
    width = widths[0] + widths[1] + 12
    lines = [
        f'Model: "{model.name}"  (time-major shapes)',
        "_" * width,
        f" {'Layer (type)':<{widths[0] - 1}}{'Output Shape':<{widths[1]}}Param #",
        "=" * width,
    ]
    for label, out, count in rows:
        lines.append(f" {label:<{widths[0] - 1}}{out:<{widths[1]}}{count:,}")
    lines += [
        "=" * width,
        f"Total params: {total:,}",
        f"Trainable params: {total:,}",
        "Non-trainable params: 0",
        "_" * width,
    ]
    return "\n".join(lines)
