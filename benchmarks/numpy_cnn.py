"""The digits CNN with backprop written by hand in NumPy (im2col convolutions), trained by SGD.

Per conv layer (NHWC, 3x3, stride 1, SAME): ``cols = im2col(x)`` of shape
``(B H W, 9 c_in)``, ``y = cols @ w.reshape(9 c_in, c_out) + b``; backward
``dw = cols^T dy``, ``db = sum dy``, ``dx = col2im(dy @ w^T)``. Max-pool 2x2 sends ``dy`` to
the position of each window's (first) maximum. Same layouts as jaxbp: ``w`` is HWIO.
"""

from __future__ import annotations

import numpy as np

from benchmarks.numpy_mlp import NumpyMLP, softmax_cross_entropy


def im2col(x, k: int):
    """``(B, H, W, C)`` -> ``(B, H, W, k k C)`` patches of the zero-padded (SAME) input."""
    _, h, w, _ = x.shape
    p = k // 2
    xp = np.pad(x, ((0, 0), (p, k - 1 - p), (p, k - 1 - p), (0, 0)))
    return np.concatenate([xp[:, i:i + h, j:j + w, :] for i in range(k) for j in range(k)],
                          axis=-1)


def col2im(dcols, k: int, c: int):
    """Adjoint of :func:`im2col`: sums each patch gradient back onto the input it came from."""
    b, h, w, _ = dcols.shape
    p = k // 2
    dxp = np.zeros((b, h + k - 1, w + k - 1, c), dcols.dtype)
    for n, (i, j) in enumerate((i, j) for i in range(k) for j in range(k)):
        dxp[:, i:i + h, j:j + w, :] += dcols[..., n * c:(n + 1) * c]
    return dxp[:, p:p + h, p:p + w, :]


def conv_forward(x, w, b):
    k, _, c_in, c_out = w.shape
    cols = im2col(x, k)
    y = (cols.reshape(-1, k * k * c_in) @ w.reshape(-1, c_out) + b)
    return y.reshape(*x.shape[:3], c_out), cols


def conv_backward(cols, w, dy, need_dx: bool):
    k, _, c_in, c_out = w.shape
    dy2 = dy.reshape(-1, c_out)
    dw = (cols.reshape(-1, k * k * c_in).T @ dy2).reshape(w.shape)
    dx = col2im((dy2 @ w.reshape(-1, c_out).T).reshape(*dy.shape[:3], -1), k, c_in) if need_dx \
        else None
    return dw, dy2.sum(axis=0), dx


def pool_forward(x):
    """2x2 max-pool; the cache marks each window's first maximum in row-major order."""
    b, h, w, c = x.shape
    windows = x.reshape(b, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 5, 2, 4)
    windows = windows.reshape(b, h // 2, w // 2, c, 4)
    # Digits have flat regions, so equal maxima are common: the gradient goes to the first one,
    # as in jax.grad of reduce_window max and in PyTorch.
    first = windows.argmax(axis=-1)
    y = np.take_along_axis(windows, first[..., None], axis=-1)[..., 0]
    return y, first


def pool_backward(first, dy):
    b, h2, w2, c = first.shape
    dwin = (np.arange(4) == first[..., None]) * dy[..., None]      # (b, h2, w2, c, 4)
    dwin = dwin.reshape(b, h2, w2, c, 2, 2).transpose(0, 1, 4, 2, 5, 3)
    return dwin.reshape(b, 2 * h2, 2 * w2, c)


class NumpyCNN(NumpyMLP):
    """conv-relu-pool, conv-relu-pool, flatten, dense;
    ``params = [(w1, b1), (w2, b2), (w3, b3)]``."""

    def loss_and_grads(self, x, y):
        (w1, b1), (w2, b2), (w3, b3) = self.params
        z1, cols1 = conv_forward(x, w1, b1)
        a1, mask1 = pool_forward(np.maximum(z1, 0.0))
        z2, cols2 = conv_forward(a1, w2, b2)
        a2, mask2 = pool_forward(np.maximum(z2, 0.0))
        flat = a2.reshape(len(a2), -1)
        loss, dz3 = softmax_cross_entropy(flat @ w3 + b3, y)
        dw3, db3 = flat.T @ dz3, dz3.sum(axis=0)
        da2 = (dz3 @ w3.T).reshape(a2.shape)
        dz2 = pool_backward(mask2, da2) * (z2 > 0)
        dw2, db2, da1 = conv_backward(cols2, w2, dz2, need_dx=True)
        dz1 = pool_backward(mask1, da1) * (z1 > 0)
        dw1, db1, _ = conv_backward(cols1, w1, dz1, need_dx=False)
        return loss, [(dw1, db1), (dw2, db2), (dw3, db3)]
