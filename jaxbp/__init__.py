"""jaxbp: neural networks as pure JAX functions, with hand-derived backprop beside jax.grad.

The public API is what this module re-exports. Every layer, its ``Params`` type and the weight
initialisers come from :mod:`jaxbp.layers` (listed once, in its ``__all__``); the rest is named
here. ``ARCHITECTURE.md`` maps the modules.
"""

from jaxbp import layers as _layers
from jaxbp._core import Layer, Loss, StateRule, Wiring, count_params, init_layer_state, serial
from jaxbp.gradients import as_custom_vjp, autodiff, backprop, objective, penalty, penalty_grad
from jaxbp.check import (GradientCheckError, GradientReport, assert_gradients_match,
                         backprop_vs_autodiff, check_gradients, check_hvp, check_jvp, check_layer,
                         check_loss, check_vjp)
from jaxbp import cases, checkpoint, data, models, optim, parallel
from jaxbp.summarize import Summary, summary
from jaxbp.train import (FitResult, TrainingDiverged, TrainState, evaluate, fit, make_train_epoch,
                         make_train_step)
from jaxbp.train import LearningRateTest, SweepResult, find_learning_rate, sweep
from jaxbp.layers import *
from jaxbp.losses import (
    binary_cross_entropy,
    mse,
    sigmoid_binary_cross_entropy,
    softmax_cross_entropy,
    token_cross_entropy,
    weighted,
)

__version__ = "0.1.0"

__all__ = [
    "Layer",
    "Loss",
    "serial",
    "count_params",
    "Wiring",
    "StateRule",
    "init_layer_state",
    "summary",
    "Summary",
    # gradients
    "autodiff",
    "backprop",
    "objective",
    "penalty",
    "penalty_grad",
    "as_custom_vjp",
    # losses
    "binary_cross_entropy",
    "mse",
    "sigmoid_binary_cross_entropy",
    "softmax_cross_entropy",
    "token_cross_entropy",
    "weighted",
    # checking
    "assert_gradients_match",
    "backprop_vs_autodiff",
    "check_gradients",
    "check_hvp",
    "check_jvp",
    "check_layer",
    "check_loss",
    "check_vjp",
    "GradientCheckError",
    "GradientReport",
    # training
    "FitResult",
    "TrainState",
    "TrainingDiverged",
    "evaluate",
    "fit",
    "make_train_epoch",
    "make_train_step",
    "LearningRateTest",
    "SweepResult",
    "find_learning_rate",
    "sweep",
    # modules
    "cases",
    "checkpoint",
    "data",
    "models",
    "optim",
    "parallel",
    *_layers.__all__,
]
