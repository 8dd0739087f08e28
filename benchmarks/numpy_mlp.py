"""The textbook baseline: the same MLP with backprop written by hand in NumPy, trained by SGD.

Forward ``z_l = a_{l-1} @ w_l + b_l``, ``a_l = f(z_l)``; backward from ``dz_L`` (the fused
loss gradient) ``dw_l = a_{l-1}^T dz_l``, ``db_l = sum_batch dz_l``,
``dz_{l-1} = (dz_l @ w_l^T) * f'(z_{l-1})``. SGD updates the arrays in place, as a NumPy
training loop would (no copies: the fastest fair baseline).
"""

from __future__ import annotations

import numpy as np

from benchmarks.configs import Config


def _sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # no overflow warning for large |z|


# f(z) and f'(z) written in terms of a = f(z) (sigmoid, tanh) or z (relu).
_ACT = {
    "sigmoid": (_sigmoid, lambda z, a: a * (1.0 - a)),
    "tanh": (np.tanh, lambda z, a: 1.0 - a * a),
    "relu": (lambda z: np.maximum(z, 0.0), lambda z, a: (z > 0).astype(z.dtype)),
}


def softmax_cross_entropy(z, y):
    """Mean cross-entropy of logits ``z: (batch, k)`` and labels ``y: (batch,)``, and
    ``dL/dz = (softmax(z) - onehot(y)) / batch``."""
    shifted = z - z.max(axis=1, keepdims=True)  # exp cannot overflow
    e = np.exp(shifted)
    total = e.sum(axis=1, keepdims=True)
    rows = np.arange(len(y))
    loss = np.mean(np.log(total[:, 0]) - shifted[rows, y])
    dz = e / total
    dz[rows, y] -= 1.0
    dz /= len(y)
    return loss, dz


class NumpyMLP:
    """The config's network on NumPy arrays ``[(w, b), ...]`` (copied, so the caller's stay)."""

    def __init__(self, config: Config, params, xs=None, ys=None):
        self.config = config
        self.params = [(np.array(w), np.array(b)) for w, b in params]
        self.f, self.df = _ACT[config.activation]
        self._data = list(zip(xs, ys)) if xs is not None else []
        self.steps = len(self._data)
        self.loss = None

    def loss_and_grads(self, x, y):
        """``(loss, [(dw, db), ...])`` for one batch; the loss averaged as jaxbp's."""
        n_layers = len(self.params)
        zs, acts = [], [x]
        for i, (w, b) in enumerate(self.params):
            z = acts[-1] @ w + b
            zs.append(z)
            if i < n_layers - 1:
                acts.append(self.f(z))
        z = zs[-1]
        if self.config.loss == "mse":
            out = _sigmoid(z)
            loss = np.mean((out - y) ** 2)
            dz = (2.0 / out.size) * (out - y) * out * (1.0 - out)
        else:
            loss, dz = softmax_cross_entropy(z, y)
        grads = [None] * n_layers
        for i in reversed(range(n_layers)):
            w, _ = self.params[i]
            grads[i] = (acts[i].T @ dz, dz.sum(axis=0))
            if i > 0:
                dz = (dz @ w.T) * self.df(zs[i - 1], acts[i])
        return loss, grads

    def sgd_step(self, x, y, learning_rate: float):
        loss, grads = self.loss_and_grads(x, y)
        for (w, b), (dw, db) in zip(self.params, grads):
            w -= learning_rate * dw
            b -= learning_rate * db
        return loss

    def run(self) -> None:
        """One epoch of SGD over the batches given at construction."""
        for x, y in self._data:
            self.loss = self.sgd_step(x, y, self.config.learning_rate)

    def numpy_params(self):
        return self.params
