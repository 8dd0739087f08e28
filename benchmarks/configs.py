"""The benchmark configurations and their data, shared by every implementation.

Every implementation (jaxbp, NumPy, PyTorch) trains the *same* network from the *same* initial
parameters on the *same* batches, so their timings compare like with like. Data and parameters
are made here once, as NumPy arrays, and handed to each implementation.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np


class Config(NamedTuple):
    """One benchmark configuration.

    Attributes:
      name: the row name in the report.
      sizes: layer widths ``(d_in, hidden..., d_out)`` of an MLP; for a CNN ``(pixels, classes)``.
      activation: hidden activation: ``"sigmoid"``, ``"tanh"`` or ``"relu"``.
      loss: ``"mse"`` (on a sigmoid output) or ``"softmax_cross_entropy"`` (on logits).
      batch: examples per step.
      steps: batches (steps) in one epoch; a scanned epoch runs them in one compiled call.
      data: ``"xor"``, ``"digits"`` (scikit-learn's 8x8 digits) or ``"random"``.
      learning_rate: for SGD; Adam uses ``adam_learning_rate``.
      adam_learning_rate: for Adam.
      channels: for a CNN (``kind="cnn"``), the output channels of its two conv stages.
    """

    name: str
    sizes: tuple[int, ...]
    activation: str
    loss: str
    batch: int
    steps: int
    data: str
    learning_rate: float = 0.05
    adam_learning_rate: float = 1e-3
    channels: tuple[int, ...] = ()

    @property
    def kind(self) -> str:
        return "cnn" if self.channels else "mlp"

    @property
    def description(self) -> str:
        if self.kind == "cnn":
            c1, c2 = self.channels
            return (f"8x8x1 images: conv3x3({c1}) relu maxpool2, conv3x3({c2}) relu maxpool2, "
                    f"flatten, dense(10); softmax CE, batch {self.batch}")
        loss = "MSE" if self.loss == "mse" else "softmax CE"
        head = " + sigmoid out" if self.loss == "mse" else ""
        sizes = "-".join(map(str, self.sizes))
        return f"{sizes} {self.activation}{head}, {loss}, batch {self.batch}"


CONFIGS: dict[str, Config] = {
    c.name: c for c in [
        Config("xor", (2, 8, 1), "sigmoid", "mse", 4, 500, "xor", learning_rate=0.5),
        Config("digits", (64, 128, 10), "tanh", "softmax_cross_entropy", 64, 28, "digits"),
        Config("mnist-shaped", (784, 256, 256, 10), "relu", "softmax_cross_entropy", 128, 32,
               "random"),
        Config("large", (784, 1024, 1024, 10), "relu", "softmax_cross_entropy", 512, 8,
               "random", learning_rate=0.01),
        # The CNN of examples/digits_cnn.py without its dropout (random masks cannot be made
        # equal across frameworks, and the check below needs equal numbers).
        Config("digits-cnn", (64, 10), "relu", "softmax_cross_entropy", 64, 28, "digits",
               channels=(16, 32)),
    ]
}


def make_data(config: Config, dtype=np.float32, seed: int = 0, steps: int | None = None):
    """One epoch of batches: ``xs: (steps, batch, d_in)`` and ``ys``.

    ``ys`` is ``(steps, batch, 1)`` floats for MSE and ``(steps, batch)`` int32 class labels for
    softmax cross-entropy.
    """
    steps = config.steps if steps is None else steps
    n, d_in, d_out = steps * config.batch, config.sizes[0], config.sizes[-1]
    rng = np.random.default_rng(seed)
    if config.data == "xor":
        base_x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float64)
        base_y = np.array([[0], [1], [1], [0]], np.float64)
        reps = -(-n // 4)
        x, y = np.tile(base_x, (reps, 1))[:n], np.tile(base_y, (reps, 1))[:n]
    elif config.data == "digits":
        x, y = _digits(n, rng)
    else:
        x = rng.uniform(0.0, 1.0, (n, d_in))
        y = rng.integers(0, d_out, n)
    example = (8, 8, 1) if config.kind == "cnn" else (d_in,)
    x = x.astype(dtype).reshape(steps, config.batch, *example)
    if config.loss == "mse":
        return x, y.astype(dtype).reshape(steps, config.batch, d_out)
    return x, y.astype(np.int32).reshape(steps, config.batch)


def _digits(n: int, rng):
    data, target = _load_digits()
    if data is None:  # scikit-learn is optional: fall back to data of the same shape
        return rng.uniform(0.0, 1.0, (n, 64)), rng.integers(0, 10, n)
    if n > len(target):
        raise ValueError(f"digits: {n} examples requested but the data set has {len(target)}; "
                         f"lower steps or batch.")
    order = rng.permutation(len(target))[:n]
    return data[order] / 16.0, target[order]


@functools.lru_cache(maxsize=1)
def _load_digits():
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        return None, None
    d = load_digits()
    return d.data, d.target


def matmul_flops(config: Config) -> int:
    """Matmul FLOPs of one training step (forward + backward), elementwise work not counted.

    Per dense layer ``(d_in, d_out)`` and batch ``B``: forward ``x @ w`` is ``2 B d_in d_out``;
    backward ``dw = x^T dy`` another ``2 B d_in d_out`` and ``dx = dy @ w^T`` another, except for
    the first layer, whose ``dx`` nobody needs. A 3x3 SAME convolution counts as the matmul of
    its im2col form: ``2 B H W (9 c_in) c_out`` per pass.
    """
    if config.kind == "cnn":
        (c1, c2), b = config.channels, config.batch
        conv1, conv2 = 2 * b * 8 * 8 * 9 * 1 * c1, 2 * b * 4 * 4 * 9 * c1 * c2
        return 2 * conv1 + 3 * conv2 + 3 * 2 * b * (2 * 2 * c2) * config.sizes[-1]
    total = 0
    for i, (d_in, d_out) in enumerate(zip(config.sizes[:-1], config.sizes[1:])):
        total += (2 if i == 0 else 3) * 2 * config.batch * d_in * d_out
    return total
