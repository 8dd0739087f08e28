"""Ready-made networks, each with the loss it trains with: the ones ``jaxbp train`` builds.

- :func:`mlp`: ``dense -> activation (-> dropout)`` per hidden width, then class logits
  (softmax cross-entropy) or one sigmoid unit (squared error, the classical XOR set-up);
- :func:`digits_cnn`: two ``conv2d -> activation -> max_pool`` stages for the 8x8 digits
  images of :func:`digits_images`, then ``flatten (-> dropout) -> dense(10)``.

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

from typing import NamedTuple, Sequence

from jaxbp import data
from jaxbp._core import Layer, Loss, serial
from jaxbp._validate import fail, one_of, positive_int
from jaxbp.layers import ACTIVATIONS, conv2d, dense, dropout, flatten, max_pool, sigmoid
from jaxbp.losses import mse, softmax_cross_entropy

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


def digits_images(seed: int = 0) -> data.Dataset:
    """The digits split as ``data.load`` splits it, as ``(8, 8, 1)`` images scaled to [0, 1].

    Not standardised per pixel: a convolution shares its weights across positions, so every
    position should keep the same scale.
    """
    splits = data.split(*data.digits(), seed=seed)
    train, val, test = (data.Split(s.x.reshape(-1, *DIGITS_IMAGE) / 16.0, s.y) for s in splits)
    return data.Dataset("digits", train, val, test, 10)


__all__ = ["DIGITS_IMAGE", "Model", "OUTPUTS", "digits_cnn", "digits_images", "mlp"]
