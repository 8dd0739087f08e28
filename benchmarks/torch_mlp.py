"""PyTorch eager on the CPU: the same MLP, initial parameters, loss and optimizer as jaxbp.

Written as a PyTorch user would: ``nn.Sequential`` of ``nn.Linear`` and activations,
``F.cross_entropy`` / ``F.mse_loss``, ``torch.optim.SGD`` / ``Adam`` with default settings, and a
``zero_grad / backward / step`` loop. ``nn.Linear`` stores ``w`` as ``(d_out, d_in)``: parameters
are transposed on the way in and out, so they compare with jaxbp's ``(d_in, d_out)``.
"""

from __future__ import annotations

import numpy as np

from benchmarks.configs import Config


def available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


class TorchMLP:
    """One network and optimizer (``"sgd"`` or ``"adam"``); :meth:`run` trains one epoch."""

    def __init__(self, config: Config, params, xs=None, ys=None, optimizer: str = "sgd"):
        import torch
        from torch import nn

        self.torch, self.config = torch, config
        act = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU}[config.activation]
        layers = []
        for i, (w, b) in enumerate(params):
            w, b = np.array(w), np.array(b)  # writable copies (arrays from JAX are read-only)
            linear = nn.Linear(*w.shape, dtype=torch.from_numpy(w).dtype)
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(np.ascontiguousarray(w.T)))
                linear.bias.copy_(torch.from_numpy(b))
            layers.append(linear)
            if i < len(params) - 1:
                layers.append(act())
        if config.loss == "mse":
            layers.append(nn.Sigmoid())
        self.model = nn.Sequential(*layers)
        self.loss_fn = (nn.functional.mse_loss if config.loss == "mse"
                        else nn.functional.cross_entropy)
        if optimizer == "sgd":
            self.optimizer = torch.optim.SGD(self.model.parameters(), lr=config.learning_rate)
        else:
            self.optimizer = torch.optim.Adam(self.model.parameters(),
                                              lr=config.adam_learning_rate)
        self._data = [] if xs is None else [self._tensors(x, y) for x, y in zip(xs, ys)]
        self.steps = len(self._data)
        self.loss = None

    def _tensors(self, x, y):
        y = self.torch.from_numpy(np.array(y))
        return self.torch.from_numpy(np.array(x)), (y.long() if self.config.loss != "mse" else y)

    def loss_and_grads(self, x, y):
        """``(loss, [(dw, db), ...])`` in jaxbp's layout, for one batch."""
        self.model.zero_grad(set_to_none=True)
        loss = self.loss_fn(self.model(*self._tensors(x, y)[:1]), self._tensors(x, y)[1])
        loss.backward()
        grads = [(m.weight.grad.numpy().T, m.bias.grad.numpy()) for m in self._linears()]
        return loss.item(), grads

    def step(self, x, y):
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss_fn(self.model(x), y)
        loss.backward()
        self.optimizer.step()
        return loss

    def run(self) -> None:
        for x, y in self._data:
            loss = self.step(x, y)
        self.loss = loss.item()

    def _linears(self):
        return [m for m in self.model if isinstance(m, self.torch.nn.Linear)]

    def numpy_params(self):
        return [(m.weight.detach().numpy().T.copy(), m.bias.detach().numpy().copy())
                for m in self._linears()]
