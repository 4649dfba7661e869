"""Models with readouts for the architectures people train.

Sequence → vector (last state → dense), sequence → sequence (every state →
dense), an embedding front end for token ids, and the classic sentiment
classifier ``Embedding → LSTM → Dense(1, sigmoid)``. Each is a :class:`Model`
record of pure functions over nested plain-dict params.
"""

from gradflow.tasks import binary_cross_entropy

from ._models import Model, sentiment_classifier, seq2seq, seq2vec

__all__ = [
    "Model",
    "binary_cross_entropy",
    "sentiment_classifier",
    "seq2seq",
    "seq2vec",
]
