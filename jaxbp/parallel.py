"""Data parallelism over a device mesh: the batch sharded, the parameters replicated.

The mesh has one axis, ``"batch"``, over ``n`` devices. A data-parallel gradient is the
ordinary gradient of the ordinary program, written for the whole batch; only the *placement*
of its values changes: ``x`` and ``y`` are sharded along their first axis, ``params`` are
replicated, and ``jax.jit`` (GSPMD) partitions the computation. Each device computes the
partial gradient of its rows and the compiler inserts the all-reduce that sums them, because
for a batch-mean objective

    dJ/dθ = (1/N) sum_i dℓ_i/dθ = (1/N) sum_devices sum_{i on device} dℓ_i/dθ.

So data-parallel training equals single-device training up to the order of floating-point
additions (about 1e-16 relative in float64), for the hand-derived ``backprop`` and for
``autodiff`` alike, and random draws (dropout masks) are the same bits as on one device.

A batch of ``N`` rows that does not divide by ``n`` is padded to ``N_pad = n * ceil(N / n)``
rows (copies of the last row, so padded inputs stay valid: labels in range, probabilities in
[0, 1]) and the loss is *masked*: padded rows get weight exactly zero,

    J = (1/N) sum_i m_i ℓ_i,     dJ/dŷ_i = (m_i / N) dℓ_i/dŷ_i,    m_i ∈ {0, 1},

which requires the loss to be a batch mean ``L = (1/B) sum_i ℓ_i`` (every jaxbp loss is).
Multi-host runs (``jax.distributed.initialize``) use the same code: ``jax.devices()`` then
lists every process's devices; see ``docs/scale.md``.
"""

from __future__ import annotations

import math
from typing import Any
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxbp._core import Array, Layer, Loss, Params, brief
from jaxbp.gradients import GradFn, gradient_source
from jaxbp.losses import weighted

#: The name of the mesh's one axis, along which the batch is sharded.
BATCH_AXIS = "batch"


def make_mesh(devices: int | Sequence[Any] | None = None) -> Mesh:
    """A one-axis mesh named ``"batch"``.

    Args:
      devices: ``None`` for every device (``jax.devices()``), an int ``n`` for the first ``n``
        of ``jax.devices()``, or a sequence of ``jax.Device``.

    Examples:
      >>> from jaxbp.parallel import make_mesh
      >>> dict(make_mesh(1).shape)
      {'batch': 1}
    """
    available = jax.devices()
    if devices is None:
        chosen = list(available)
    elif isinstance(devices, (bool, float)) or not isinstance(devices, (int, np.integer, Sequence)):
        raise TypeError(
            f"devices={devices!r} must be None (all devices), a number of devices such as 4, or "
            f"a list of jax.Device. Fix: pass devices={len(available)} to use all of them.")
    elif isinstance(devices, (int, np.integer)):
        n = int(devices)
        if not 1 <= n <= len(available):
            raise ValueError(
                f"devices={n} but this process sees {len(available)} device(s) "
                f"({available[0].platform}); expected 1 <= devices <= {len(available)}. Fix: pass "
                f"devices<={len(available)}; on CPU, simulate more with XLA_FLAGS="
                f"--xla_force_host_platform_device_count={max(n, 1)} set before JAX starts.")
        chosen = available[:n]
    else:
        chosen = list(devices)
        if not chosen or not all(isinstance(d, jax.Device) for d in chosen):
            raise TypeError(
                f"devices={devices!r} must be a non-empty list of jax.Device (from jax.devices()).")
    return Mesh(np.array(chosen), (BATCH_AXIS,))


def batch_sharding(mesh: Mesh, axis: int = 0) -> NamedSharding:
    """Shards array axis ``axis`` (the batch axis) over the mesh; the other axes are whole."""
    return NamedSharding(mesh, PartitionSpec(*([None] * axis), BATCH_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    """A full copy on every device of the mesh (parameters, optimizer state, keys)."""
    return NamedSharding(mesh, PartitionSpec())


def put(tree: Any, sharding: NamedSharding) -> Any:
    """Places every array leaf of ``tree`` with ``sharding``; works across hosts.

    Every process passes the same full values and contributes the shards its own devices hold
    (``jax.make_array_from_callback``), so one call serves one host and many.
    """
    def one(leaf):
        if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            # A key travels as its raw bits (device_put cannot target other hosts' devices).
            data = one(jax.random.key_data(leaf))
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(leaf))
        value = np.asarray(leaf)
        return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])

    return jax.tree_util.tree_map(one, tree)


def pad_rows(multiple: int, *arrays: Array) -> tuple[tuple[Array, ...], Array]:
    """Pads the first axis of each array to a multiple of ``multiple``; returns them and a mask.

    Padded rows repeat the last row (valid data for any loss); ``mask`` has shape ``(N_pad,)``,
    1 for a real row and 0 for padding, in the dtype of the first floating array (else float32).
    Shapes are static, so this runs under ``jit`` and adds no work when nothing is padded.
    """
    n = arrays[0].shape[0]
    if any(a.shape[0] != n for a in arrays):
        raise ValueError(f"pad_rows: arrays have different batch sizes "
                         f"{[a.shape[0] for a in arrays]}; expected one batch size.")
    n_pad = multiple * math.ceil(n / multiple)
    floats = [a.dtype for a in arrays if jnp.issubdtype(a.dtype, jnp.floating)]
    mask = (jnp.arange(n_pad) < n).astype(floats[0] if floats else jnp.float32)
    if n_pad == n:
        return tuple(arrays), mask
    padded = tuple(jnp.concatenate([a, jnp.repeat(a[-1:], n_pad - n, axis=0)], axis=0)
                   for a in arrays)
    return padded, mask


def masked(loss: Loss, mask: Array) -> Loss:
    """The batch-mean ``loss`` over the rows where ``mask`` is 1; rows with mask 0 weigh nothing.

    With ``ℓ_i = loss(ŷ[i:i+1], y[i:i+1])`` (one row, so the batch mean is that row's loss):

        value = (1/M) sum_i m_i ℓ_i                    M = sum_i m_i
        grad  = dvalue/dŷ_i = (m_i / M) dℓ_i/dŷ_i       (batch, ...), row by row

    That is :func:`jaxbp.losses.weighted` with weights ``m_i / M``, so ``grad`` stays the loss's
    own hand-derived gradient. Exact for every batch-mean loss; not for a loss that couples rows.
    """
    per_row = weighted(loss)

    def weights(y_pred):
        m = mask.astype(y_pred.dtype)
        return m / jnp.sum(m)

    return Loss(lambda y_pred, y_true: per_row.value(y_pred, (y_true, weights(y_pred))),
                lambda y_pred, y_true: per_row.grad(y_pred, (y_true, weights(y_pred))),
                f"masked({loss.name})")


def constrain(tree: Any, sharding: NamedSharding) -> Any:
    """Inside ``jit``: asks the compiler to lay every leaf of ``tree`` out with ``sharding``."""
    return jax.tree_util.tree_map(lambda a: jax.lax.with_sharding_constraint(a, sharding), tree)


def data_parallel(gradient: str | Callable[..., GradFn] = "backprop", *,
                  devices: int | Sequence[Any] | Mesh | None = None) -> Callable[..., GradFn]:
    """Turns a gradient source into its data-parallel version, with the same signature.

    Args:
      gradient: ``bp.backprop``, ``bp.autodiff`` (or their names), or any factory
        ``(net, loss, *, l1, l2, regularize) -> f(params, x, y, *, key=None)``.
      devices: the devices to shard the batch over: ``None`` (all), a count ``n`` (the first
        ``n`` of ``jax.devices()``), a list of ``jax.Device``, or a :class:`Mesh` from
        :func:`make_mesh`.

    Returns:
      A factory with the signature of ``bp.backprop``. Its gradient function pads the batch to
      a multiple of the device count (masking the padding, see :func:`masked`), shards it along
      ``"batch"``, replicates ``params`` and returns the value and gradients replicated. It is
      ``jit``-ed and can be called inside another ``jit`` (a whole training step). With
      ``state=`` (a network with batch norm) it returns ``(value, grads, new_state)``, the
      batch statistics taken over the whole batch; such a batch must split evenly.

    Examples:
      >>> import jax, jax.numpy as jnp, jaxbp as bp
      >>> from jaxbp.parallel import data_parallel
      >>> net = bp.serial(bp.dense(4), bp.tanh(), bp.dense(1))
      >>> params, _ = net.init(jax.random.key(0), (2,))
      >>> grad_fn = data_parallel(bp.backprop, devices=1)(net, bp.mse())
      >>> value, grads = grad_fn(params, jnp.ones((3, 2)), jnp.zeros((3, 1)))
      >>> grads[0].w.shape
      (2, 4)
    """
    gradient = gradient_source(gradient, "data_parallel", "gradient")
    mesh = devices if isinstance(devices, Mesh) else make_mesh(devices)
    n = mesh.size
    rows, whole = batch_sharding(mesh), replicated(mesh)

    def factory(net: Layer, loss: Loss, *, l1: float = 0.0, l2: float = 0.0,
                regularize=None) -> GradFn:
        gradient(net, loss, l1=l1, l2=l2, regularize=regularize)  # validates arguments now

        @jax.jit
        def value_and_grad(params: Params, x: Array, y: Array, *, key=None, state=None):
            if state is not None and x.shape[0] % n:
                raise ValueError(
                    f"data_parallel: a batch of {x.shape[0]} rows does not split evenly over "
                    f"{n} devices, and {brief(net.name)} has batch statistics, which padding "
                    f"rows would change. Fix: a batch size that is a multiple of {n}.")
            (x_pad, y_pad), mask = pad_rows(n, x, y)
            source = loss if x_pad.shape[0] == x.shape[0] else masked(loss, mask)
            grad_fn = gradient(net, source, l1=l1, l2=l2, regularize=regularize)
            args = (constrain(params, whole), constrain(x_pad, rows), constrain(y_pad, rows))
            if state is None:
                value, grads = grad_fn(*args, key=key)
                return constrain(value, whole), constrain(grads, whole)
            # batch statistics are taken over the whole (sharded) batch: one all-reduce each
            out = grad_fn(*args, key=key, state=constrain(state, whole))
            return constrain(out, whole)

        return value_and_grad

    factory.mesh = mesh  # type: ignore[attr-defined]
    return factory


__all__ = [
    "BATCH_AXIS",
    "batch_sharding",
    "constrain",
    "data_parallel",
    "make_mesh",
    "masked",
    "pad_rows",
    "put",
    "replicated",
]
