"""Ready-made networks, each with the loss it trains with: the ones ``jaxbp train`` builds.

- :func:`mlp`: ``dense -> activation (-> dropout)`` per hidden width, then class logits
  (softmax cross-entropy) or one sigmoid unit (squared error, the classical XOR set-up);
- :func:`digits_cnn`: two ``conv2d -> activation -> max_pool`` stages for the 8x8 digits
  images of :func:`digits_images`, then ``flatten (-> dropout) -> dense(10)``;
- :func:`digits_resnet`: a residual CNN with batch norm for the same images (a stem
  convolution, then residual blocks ``conv -> batch_norm -> relu -> conv -> batch_norm`` plus
  the skip, each followed by ``relu``; global average pooling, ``dense(10)``);
- :func:`transformer`: a causal (GPT-style, pre-norm) transformer on token ids, trained with
  ``token_cross_entropy`` at every position; :func:`transformer_block` is one of its blocks.

Examples:
  >>> import jax, jaxbp as bp
  >>> from jaxbp import models
  >>> net, loss = models.mlp((8,), 2, activation="tanh", output="sigmoid")
  >>> net.name, loss.name
  ('serial(dense(8), tanh, dense(1), sigmoid)', 'mse')
  >>> params, out_shape = net.init(jax.random.key(0), (2,))
  >>> out_shape
  (1,)
"""

from __future__ import annotations

import functools
from typing import NamedTuple
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from jaxbp import data
from jaxbp._core import Layer, Loss, serial
from jaxbp._validate import fail, int_at_least, number_in, one_of, positive_int
from jaxbp.layers import (ACTIVATIONS, avg_pool, batch_norm, conv2d, dense, dropout, embedding,
                          flatten, gelu, layer_norm, max_pool, multi_head_attention,
                          position_embedding, relu, residual, sigmoid)
from jaxbp.losses import mse, softmax_cross_entropy, token_cross_entropy

#: The shape of one digits image as :func:`digits_images` gives it (NHWC, without the batch).
DIGITS_IMAGE = (8, 8, 1)

#: ``output=`` of :func:`mlp`: class logits (softmax cross-entropy) or one sigmoid unit (MSE).
OUTPUTS = ("logits", "sigmoid")


class Model(NamedTuple):
    """A network and the loss it is trained with (unpacks as ``net, loss = ...``)."""

    net: Layer
    loss: Loss


def _activation(where: str, activation: str) -> Layer:
    name = one_of(where, "activation", activation, ACTIVATIONS, "an activation",
                  "activation='relu'")
    return ACTIVATIONS[name]()


def _widths(where: str, arg: str, values, example: str) -> tuple[int, ...]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        fail(where, arg, values, "a sequence of positive ints", example, error=TypeError)
    return tuple(positive_int(where, arg, v, example) for v in values)


def mlp(hidden: Sequence[int], num_classes: int, activation: str = "relu",
        drop_prob: float = 0.0, *, output: str = "logits") -> Model:
    """A multi-layer perceptron for ``num_classes`` classes.

    Args:
      hidden: the hidden layers' widths, e.g. ``(32, 32)`` (may be empty).
      num_classes: the number of classes (2 for ``output="sigmoid"``).
      activation: the hidden activation, a name of ``jaxbp.layers.ACTIVATIONS``.
      drop_prob: dropout after each hidden layer with this drop probability; 0: none.
      output: ``"logits"``: ``dense(num_classes)`` trained with ``softmax_cross_entropy``
        on integer labels; ``"sigmoid"``: ``dense(1) -> sigmoid`` trained with ``mse`` on
        ``(batch, 1)`` targets in {0, 1}.

    Returns:
      ``Model(net, loss)``.
    """
    hidden = _widths("mlp", "hidden", hidden, "hidden=(32, 32)")
    num_classes = positive_int("mlp", "num_classes", num_classes, "num_classes=10")
    output = one_of("mlp", "output", output, OUTPUTS, "an output", "output='logits'")
    layers = []
    for width in hidden:
        layers += [dense(width), _activation("mlp", activation)]
        if drop_prob:
            layers.append(dropout(drop_prob))
    if output == "sigmoid":
        if num_classes != 2:
            fail("mlp", "num_classes", num_classes, "2 with output='sigmoid' (one unit)",
                 "output='logits'")
        return Model(serial(*layers, dense(1), sigmoid()), mse())
    return Model(serial(*layers, dense(num_classes)), softmax_cross_entropy())


def digits_cnn(channels: Sequence[int] = (16, 32), activation: str = "relu",
               drop_prob: float = 0.0) -> Model:
    """conv-activation-maxpool twice, flatten, (dropout), dense(10), for ``(8, 8, 1)`` images.

    Args:
      channels: the output channels of the two ``conv2d(c, 3)`` stages.
      activation: the activation after each convolution (a name of ``ACTIVATIONS``).
      drop_prob: dropout before the last dense layer with this drop probability; 0: none.

    Returns:
      ``Model(net, softmax_cross_entropy())``, for the images of :func:`digits_images`.
    """
    channels = _widths("digits_cnn", "channels", channels, "channels=(16, 32)")
    if len(channels) != 2:
        fail("digits_cnn", "channels", channels, "the channels of the two convolution stages",
             "channels=(16, 32)")
    layers = []
    for c in channels:
        layers += [conv2d(c, 3), _activation("digits_cnn", activation), max_pool(2)]
    layers.append(flatten())
    if drop_prob:
        layers.append(dropout(drop_prob))
    return Model(serial(*layers, dense(10)), softmax_cross_entropy())


def transformer_block(d_model: int, num_heads: int, *, mlp_ratio: int = 4,
                      causal: bool = True, dtype=None) -> Layer:
    """One pre-norm transformer block on ``(batch, T, d_model)``, itself a ``Layer``::

        x = x + attention(layer_norm(x))                       causal multi-head attention
        x = x + dense(d_model)(gelu(dense(mlp_ratio d_model)(layer_norm(x))))

    Both halves are :func:`~jaxbp.residual` connections, so the backward sums each skip path's
    gradient with its branch's; every sublayer carries its own hand-derived backward.
    """
    d = positive_int("transformer_block", "d_model", d_model, "d_model=64")
    heads = positive_int("transformer_block", "num_heads", num_heads, "num_heads=4")
    ratio = positive_int("transformer_block", "mlp_ratio", mlp_ratio, "mlp_ratio=4")
    if d % heads:
        fail("transformer_block", "d_model", d, f"divisible by num_heads={heads}",
             f"d_model={heads * max(1, round(d / heads))}")
    attention = serial(layer_norm(dtype=dtype),
                       multi_head_attention(heads, causal=causal, dtype=dtype))
    mlp_ = serial(layer_norm(dtype=dtype), dense(ratio * d, dtype=dtype), gelu(),
                  dense(d, dtype=dtype))
    return serial(residual(attention), residual(mlp_))


def transformer(vocab_size: int, max_len: int, *, d_model: int = 64, num_heads: int = 4,
                num_blocks: int = 2, mlp_ratio: int = 4, dtype=None) -> Model:
    """A causal transformer language model on token ids ``(batch, T) -> (batch, T, vocab)``.

    ``embedding(vocab_size, d_model) -> position_embedding(max_len) -> num_blocks x``
    :func:`transformer_block` ``-> layer_norm -> dense(vocab_size)``: the logits at position
    ``t`` depend on the tokens ``0..t`` only, so they predict token ``t + 1``. Initialise with
    ``input_shape=(T,)``, ``T <= max_len``.

    Args:
      vocab_size: number of distinct tokens (the last layer's width).
      max_len: the most positions a sequence may have (the position table's rows).
      d_model: the model width; ``num_heads`` must divide it.
      num_heads: attention heads per block.
      num_blocks: transformer blocks.
      mlp_ratio: the feed-forward layer's width is ``mlp_ratio * d_model``.
      dtype: parameter dtype; ``None`` uses JAX's default float.

    Returns:
      ``Model(net, token_cross_entropy())``: integer targets ``(batch, T)``, ``-1`` at
      positions without a target.

    Examples:
      >>> import jax, jaxbp as bp
      >>> net, loss = bp.models.transformer(11, 16, d_model=8, num_heads=2, num_blocks=1)
      >>> params, shape = net.init(jax.random.key(0), (16,))
      >>> shape, loss.name
      ((16, 11), 'token_cross_entropy')
    """
    vocab = positive_int("transformer", "vocab_size", vocab_size, "vocab_size=11")
    max_len = positive_int("transformer", "max_len", max_len, "max_len=64")
    blocks = int_at_least("transformer", "num_blocks", num_blocks, 0, "num_blocks=2")
    d = positive_int("transformer", "d_model", d_model, "d_model=64")
    layers = [transformer_block(d, num_heads, mlp_ratio=mlp_ratio, dtype=dtype)
              for _ in range(blocks)]
    net = serial(embedding(vocab, d, scale=_EMBEDDING_SCALE, dtype=dtype),
                 position_embedding(max_len, dtype=dtype), *layers, layer_norm(dtype=dtype),
                 dense(vocab, dtype=dtype))
    return Model(net, token_cross_entropy())


_EMBEDDING_SCALE = 0.02  # token rows start small, as GPT-2's; each block's layer_norm rescales


def generate(net: Layer, params, prompt, steps: int, *, context: int, key=None,
             temperature: float = 1.0):
    """Continues token sequences with a causal model: ``steps`` new tokens after ``prompt``.

    Each step runs ``net`` on the last ``context`` tokens (a window of fixed length, so one
    compiled loop serves every step; while fewer tokens exist, the positions after the last
    one hold padding, which a causal model's earlier positions never see) and draws the next
    token from ``softmax(logits / temperature)`` at the last real position —
    ``temperature=0`` takes the most likely token. The whole loop is one jitted
    ``lax.fori_loop``.

    Args:
      net, params: a causal model ``(batch, context) -> (batch, context, vocab)``, such as
        :func:`transformer`'s, and its parameters.
      prompt: int token ids ``(batch, P)``, ``P >= 1``.
      steps: tokens to generate.
      context: the window the model runs on (at most its ``max_len``).
      key: PRNG key for sampling; required unless ``temperature=0``.
      temperature: ``> 0`` samples, ``0`` is greedy.

    Returns:
      int32 ``(batch, P + steps)``: the prompt followed by the generated tokens.
    """
    steps = positive_int("generate", "steps", steps, "steps=100")
    context = positive_int("generate", "context", context, "context=64")
    prompt = jnp.asarray(prompt)
    if prompt.ndim != 2 or prompt.shape[1] < 1 or not jnp.issubdtype(prompt.dtype, jnp.integer):
        fail("generate", "prompt", f"<{prompt.dtype} array of shape {prompt.shape}>",
             "int token ids of shape (batch, P), P >= 1", "prompt=ids[None, :10]",
             error=TypeError)
    temperature = number_in("generate", "temperature", temperature, low=0.0,
                            expected="a number >= 0", example="temperature=0.8")
    if temperature > 0 and key is None:
        raise TypeError("generate: key is required to sample with temperature > 0. Fix: "
                        "key=jax.random.key(0), or temperature=0 for the most likely tokens.")
    key = jax.random.key(0) if key is None else key
    return _generate(net, params, prompt.astype(jnp.int32), key, steps=steps, context=context,
                     temperature=float(temperature))


@functools.partial(jax.jit, static_argnames=("net", "steps", "context", "temperature"))
def _generate(net, params, prompt, key, *, steps, context, temperature):
    batch, p = prompt.shape
    total = p + steps
    tokens = jnp.zeros((batch, max(total, context)), jnp.int32).at[:, :p].set(prompt)

    def body(n, tokens):  # tokens[:, :n] exist; draw tokens[:, n]
        start = jnp.maximum(n - context, 0)
        window = jax.lax.dynamic_slice(tokens, (0, start), (batch, context))
        logits = net.forward(params, window)[0]
        last = jax.lax.dynamic_index_in_dim(logits, n - 1 - start, axis=1, keepdims=False)
        if temperature == 0:
            nxt = jnp.argmax(last, axis=-1)
        else:
            nxt = jax.random.categorical(jax.random.fold_in(key, n), last / temperature)
        return jax.lax.dynamic_update_index_in_dim(tokens, nxt.astype(jnp.int32), n, axis=1)

    return jax.lax.fori_loop(p, total, body, tokens)[:, :total]


def residual_block(channels: int) -> Layer:
    """``relu(x + bn(conv(relu(bn(conv(x))))))``: the basic block of a ResNet (He et al.
    2016), ``conv2d(channels, 3)`` keeping the image size, for ``(h, w, channels)`` inputs."""
    return serial(residual(serial(conv2d(channels, 3), batch_norm(), relu(),
                                  conv2d(channels, 3), batch_norm())), relu())


def digits_resnet(channels: int = 32, blocks: int = 2, drop_prob: float = 0.0) -> Model:
    """A residual CNN with batch norm for the ``(8, 8, 1)`` digits images.

    ``conv2d(channels, 3) -> batch_norm -> relu``, then ``blocks`` times
    :func:`residual_block`, then global average pooling (``avg_pool(8)``), ``flatten``,
    (dropout), ``dense(10)``. The network has state (batch norm's running statistics):
    ``fit`` trains and returns it (``FitResult.layer_state``).

    Args:
      channels: the channels of every convolution.
      blocks: how many residual blocks.
      drop_prob: dropout before the last dense layer with this drop probability; 0: none.

    Returns:
      ``Model(net, softmax_cross_entropy())``, for the images of :func:`digits_images`.
    """
    channels = positive_int("digits_resnet", "channels", channels, "channels=32")
    blocks = int_at_least("digits_resnet", "blocks", blocks, 0, "blocks=2")
    layers = [conv2d(channels, 3), batch_norm(), relu()]
    layers += [residual_block(channels) for _ in range(blocks)]
    layers += [avg_pool(DIGITS_IMAGE[:2]), flatten()]
    if drop_prob:
        layers.append(dropout(drop_prob))
    return Model(serial(*layers, dense(10)), softmax_cross_entropy())


def digits_images(seed: int = 0) -> data.Dataset:
    """The digits split as ``data.load`` splits it, as ``(8, 8, 1)`` images scaled to [0, 1].

    Not standardised per pixel: a convolution shares its weights across positions, so every
    position should keep the same scale.
    """
    splits = data.split(*data.digits(), seed=seed)
    train, val, test = (data.Split(s.x.reshape(-1, *DIGITS_IMAGE) / 16.0, s.y) for s in splits)
    return data.Dataset("digits", train, val, test, 10)


__all__ = ["DIGITS_IMAGE", "Model", "OUTPUTS", "digits_cnn", "digits_images", "digits_resnet",
           "mlp", "generate", "residual_block", "transformer", "transformer_block"]
