"""PyTorch eager on the CPU: the same network, initial parameters, loss and optimizer as jaxbp.

Written as a PyTorch user would: ``nn.Sequential`` of ``nn.Linear`` / ``nn.Conv2d`` and
activations, ``F.cross_entropy`` / ``F.mse_loss``, ``torch.optim.SGD`` / ``Adam`` with default
settings, and a ``zero_grad / backward / step`` loop.

Layouts differ from jaxbp's and are converted on the way in and out, so parameters and gradients
compare directly: ``nn.Linear`` stores ``w`` as ``(d_out, d_in)`` (jaxbp ``(d_in, d_out)``);
``nn.Conv2d`` takes NCHW images and OIHW kernels (jaxbp NHWC and HWIO). The CNN turns its
feature map back to NHWC before flattening, so the dense layer sees jaxbp's feature order.
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


class TorchNet:
    """One network and optimizer (``"sgd"`` or ``"adam"``); :meth:`run` trains one epoch."""

    def __init__(self, config: Config, params, xs=None, ys=None, optimizer: str = "sgd"):
        import torch
        from torch import nn

        self.torch, self.config = torch, config
        self.model = _cnn(config, params) if config.kind == "cnn" else _mlp(config, params)
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
        if self.config.kind == "cnn":  # NHWC -> NCHW, once, outside the timed steps
            x = np.ascontiguousarray(np.asarray(x).transpose(0, 3, 1, 2))
        return self.torch.from_numpy(np.array(x)), (y.long() if self.config.loss != "mse" else y)

    def loss_and_grads(self, x, y):
        """``(loss, [(dw, db), ...])`` in jaxbp's layout, for one batch."""
        self.model.zero_grad(set_to_none=True)
        x, y = self._tensors(x, y)
        loss = self.loss_fn(self.model(x), y)
        loss.backward()
        grads = [(_from_torch(m.weight.grad.numpy()), m.bias.grad.numpy()) for m in self._layers()]
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

    def _layers(self):
        return [m for m in self.model if hasattr(m, "weight")]

    def numpy_params(self):
        return [(_from_torch(m.weight.detach().numpy()).copy(), m.bias.detach().numpy().copy())
                for m in self._layers()]


def _to_torch(w):
    """jaxbp ``(d_in, d_out)`` -> ``(d_out, d_in)``; HWIO -> OIHW."""
    return np.ascontiguousarray(w.T if w.ndim == 2 else w.transpose(3, 2, 0, 1))


def _from_torch(w):
    return w.T if w.ndim == 2 else w.transpose(2, 3, 1, 0)


def _load(module, w, b):
    import torch

    w, b = np.array(w), np.array(b)  # writable copies (arrays from JAX are read-only)
    module = module.to(torch.from_numpy(w).dtype)
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(_to_torch(w)))
        module.bias.copy_(torch.from_numpy(b))
    return module


def _mlp(config: Config, params):
    from torch import nn

    act = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU}[config.activation]
    layers = []
    for i, (w, b) in enumerate(params):
        layers.append(_load(nn.Linear(*w.shape), w, b))
        if i < len(params) - 1:
            layers.append(act())
    if config.loss == "mse":
        layers.append(nn.Sigmoid())
    return nn.Sequential(*layers)


def _cnn(config: Config, params):
    from torch import nn

    class ToNHWC(nn.Module):
        def forward(self, x):
            return x.permute(0, 2, 3, 1)

    (w1, b1), (w2, b2), (w3, b3) = params
    return nn.Sequential(
        _load(nn.Conv2d(w1.shape[2], w1.shape[3], 3, padding=1), w1, b1), nn.ReLU(),
        nn.MaxPool2d(2),
        _load(nn.Conv2d(w2.shape[2], w2.shape[3], 3, padding=1), w2, b2), nn.ReLU(),
        nn.MaxPool2d(2),
        ToNHWC(), nn.Flatten(), _load(nn.Linear(*w3.shape), w3, b3))
