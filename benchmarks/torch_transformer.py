"""PyTorch eager on the CPU: the transformer of :mod:`benchmarks.transformer`, written as a
PyTorch user would (``nn.Embedding``, ``nn.LayerNorm``, ``nn.Linear``, ``nn.GELU("tanh")``,
``F.scaled_dot_product_attention(is_causal=True)``, ``F.cross_entropy``, ``torch.optim.SGD``),
loaded with jaxbp's initial parameters.

jaxbp's parameter leaves, in ``jax.tree_util.tree_leaves`` order, are: the token table, the
position table; per block ``ln1.gamma, ln1.beta, w_qkv, b_qkv, w_o, b_o, ln2.gamma, ln2.beta,
w_1, b_1, w_2, b_2``; the final ``gamma, beta``; the head ``w, b``. Dense weights are
``(d_in, d_out)`` in jaxbp and ``(d_out, d_in)`` in ``nn.Linear``; everything else has the same
layout (``w_qkv``'s columns are q, k, v in order, head ``h`` the h-th ``d / H`` of each, as
``split`` and ``view(B, T, H, e)`` read them). Gradients come back in jaxbp's order and layout.
"""

from __future__ import annotations

import numpy as np


def _modules(bench):
    """The network's modules (built lazily, so that importing this file needs no torch)."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    class Block(nn.Module):
        def __init__(self, d, heads):
            super().__init__()
            self.heads = heads
            self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
            self.qkv, self.out = nn.Linear(d, 3 * d), nn.Linear(d, d)
            self.fc1, self.act, self.fc2 = nn.Linear(d, 4 * d), nn.GELU("tanh"), nn.Linear(4 * d, d)

        def attention(self, x):
            b, t, d = x.shape
            q, k, v = (a.view(b, t, self.heads, d // self.heads).transpose(1, 2)
                       for a in self.qkv(x).split(d, dim=-1))
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            return self.out(o.transpose(1, 2).reshape(b, t, d))

        def forward(self, x):
            x = x + self.attention(self.ln1(x))
            return x + self.fc2(self.act(self.fc1(self.ln2(x))))

    class Transformer(nn.Module):
        def __init__(self):
            super().__init__()
            d = bench.d_model
            self.tok = nn.Embedding(bench.vocab, d)
            self.pos = nn.Parameter(torch.zeros(bench.time, d))
            self.blocks = nn.ModuleList(Block(d, bench.heads) for _ in range(bench.blocks))
            self.ln, self.head = nn.LayerNorm(d), nn.Linear(d, bench.vocab)

        def forward(self, tokens):
            x = self.tok(tokens) + self.pos[:tokens.shape[1]]
            for block in self.blocks:
                x = block(x)
            return self.head(self.ln(x))

    return Transformer()


def _ordered(model):
    """The torch parameters in jaxbp's leaf order, and whether each is an ``nn.Linear`` weight."""
    out = [(model.tok.weight, False), (model.pos, False)]
    for b in model.blocks:
        out += [(b.ln1.weight, False), (b.ln1.bias, False), (b.qkv.weight, True),
                (b.qkv.bias, False), (b.out.weight, True), (b.out.bias, False),
                (b.ln2.weight, False), (b.ln2.bias, False), (b.fc1.weight, True),
                (b.fc1.bias, False), (b.fc2.weight, True), (b.fc2.bias, False)]
    return [*out, (model.ln.weight, False), (model.ln.bias, False), (model.head.weight, True),
            (model.head.bias, False)]


class TorchTransformer:
    """The network and ``torch.optim.SGD``; :meth:`run` trains one epoch of ``(xs, ys)``, with
    ``threads`` intra-op threads (``None``: PyTorch's default, one per core)."""

    def __init__(self, bench, params, xs=None, ys=None, threads: int | None = None):
        import jax
        import torch

        self.torch, self.steps, self.threads = torch, 0 if xs is None else len(xs), threads
        self.model = _modules(bench)
        leaves = [np.array(a) for a in jax.tree_util.tree_leaves(params)]
        self.model = self.model.to(torch.from_numpy(leaves[0]).dtype)
        with torch.no_grad():
            for (p, linear), a in zip(_ordered(self.model), leaves, strict=True):
                p.copy_(torch.from_numpy(np.ascontiguousarray(a.T if linear else a)))
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=bench.learning_rate)
        self._data = [] if xs is None else [self._tensors(x, y) for x, y in zip(xs, ys)]
        self.loss = None

    def _tensors(self, x, y):
        t = self.torch
        return t.from_numpy(np.array(x)).long(), t.from_numpy(np.array(y)).long()

    def _loss(self, x, y):
        logits = self.model(x)
        return self.torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                      y.reshape(-1))

    def loss_and_grads(self, x, y):
        """``(loss, [gradient leaves])`` in jaxbp's order and layout, for one batch."""
        self.model.zero_grad(set_to_none=True)
        loss = self._loss(*self._tensors(x, y))
        loss.backward()
        grads = [p.grad.numpy().T if linear else p.grad.numpy()
                 for p, linear in _ordered(self.model)]
        return loss.item(), grads

    def numpy_params(self) -> list:
        """The parameters in jaxbp's order and layout."""
        return [p.detach().numpy().T.copy() if linear else p.detach().numpy().copy()
                for p, linear in _ordered(self.model)]

    def run(self) -> None:
        default = self.torch.get_num_threads()
        if self.threads is not None:  # on a shared machine, spinning threads can cost more
            self.torch.set_num_threads(self.threads)
        try:
            self._epoch()
        finally:
            self.torch.set_num_threads(default)

    def _epoch(self) -> None:
        for x, y in self._data:
            self.optimizer.zero_grad(set_to_none=True)
            loss = self._loss(x, y)
            loss.backward()
            self.optimizer.step()
        self.loss = loss.item()


__all__ = ["TorchTransformer"]
