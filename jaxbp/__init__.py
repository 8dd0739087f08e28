"""jaxbp: neural networks as pure JAX functions, with hand-derived backprop beside jax.grad."""

from jaxbp._core import Layer, Loss, count_params, serial
from jaxbp.gradients import as_custom_vjp, autodiff, backprop, objective, penalty, penalty_grad
from jaxbp.check import (GradientCheckError, GradientReport, assert_gradients_match,
                         check_gradients, check_layer, check_loss)
from jaxbp import data, optim
from jaxbp.train import FitResult, TrainState, evaluate, fit, make_train_step
from jaxbp.layers import (
    DenseParams,
    dense,
    elu,
    gelu,
    glorot_normal,
    glorot_uniform,
    he_normal,
    he_uniform,
    identity,
    leaky_relu,
    relu,
    sigmoid,
    softmax,
    softplus,
    tanh,
)
from jaxbp.losses import (
    binary_cross_entropy,
    mse,
    sigmoid_binary_cross_entropy,
    softmax_cross_entropy,
)

__version__ = "0.1.0"

__all__ = [
    "DenseParams",
    "Layer",
    "Loss",
    "FitResult",
    "TrainState",
    "data",
    "evaluate",
    "fit",
    "make_train_step",
    "optim",
    "autodiff",
    "backprop",
    "as_custom_vjp",
    "assert_gradients_match",
    "check_gradients",
    "check_layer",
    "check_loss",
    "GradientCheckError",
    "GradientReport",
    "binary_cross_entropy",
    "count_params",
    "dense",
    "elu",
    "gelu",
    "glorot_normal",
    "glorot_uniform",
    "he_normal",
    "he_uniform",
    "identity",
    "leaky_relu",
    "mse",
    "objective",
    "penalty",
    "penalty_grad",
    "relu",
    "serial",
    "sigmoid",
    "sigmoid_binary_cross_entropy",
    "softmax",
    "softmax_cross_entropy",
    "softplus",
    "tanh",
]
