"""The flags of ``jaxbp train`` and the per-data-set defaults that unset flags fall back to."""

from __future__ import annotations

import argparse
from typing import Any

# Per data set: the network (``jaxbp.models``), optimizer and schedule that reach the README's
# targets. ``decay = (rate, steps)`` multiplies the learning rate by ``rate`` every ``steps``
# updates; ``output`` is ``models.mlp``'s (XOR: the classical sigmoid output and squared error).
TRAIN_DEFAULTS: dict[str, dict[str, Any]] = {
    "xor": dict(hidden=(8,), activation="tanh", optimizer="sgd", lr=2.0, decay=None,
                epochs=2000, batch_size=4, l1=0.0, l2=0.0, output="sigmoid"),
    "spirals": dict(hidden=(32, 32), activation="tanh", optimizer="adam", lr=0.01, decay=None,
                    epochs=300, batch_size=32, l1=0.0, l2=0.0, output="logits"),
    "moons": dict(hidden=(16, 16), activation="tanh", optimizer="adam", lr=0.01, decay=None,
                  epochs=100, batch_size=32, l1=0.0, l2=0.0, output="logits"),
    "digits": dict(hidden=(256,), activation="relu", optimizer="adam", lr=0.002,
                   decay=(0.1, 3000), epochs=100, batch_size=32, l1=0.0, l2=1e-4,
                   output="logits"),
}

# ``--model cnn`` (digits only): ``models.digits_cnn`` (the network of examples/digits_cnn.py)
# on ``models.digits_images``; ``hidden`` are its two convolution stages' channels.
CNN_DEFAULTS = dict(hidden=(16, 32), activation="relu", optimizer="adam", lr=3e-3, decay=None,
                    epochs=30, batch_size=32, l1=0.0, l2=0.0)

# ``--model resnet`` (digits only): ``models.digits_resnet``, a residual CNN with batch norm;
# ``hidden`` has one entry per residual block, each the channels of every convolution (all
# equal: a block keeps its width). The rate decays tenfold over the 20 epochs' 780 steps.
RESNET_DEFAULTS = dict(hidden=(32, 32), activation="relu", optimizer="adam", lr=3e-3,
                       decay=(0.1, 780), epochs=20, batch_size=32, l1=0.0, l2=0.0)

#: The image models of ``--model`` (digits only), with their defaults.
IMAGE_MODELS = {"cnn": CNN_DEFAULTS, "resnet": RESNET_DEFAULTS}


# The sequence tasks (``jaxbp train sort|text``, ``--model transformer``): ``models.transformer``
# of width ``d_model`` with ``heads`` heads and ``blocks`` blocks; ``text`` reads ``--file`` and
# cuts it into windows of ``context`` characters.
SEQUENCE_DEFAULTS = {
    "sort": dict(optimizer="adam", lr=2e-3, decay=(0.5, 250), epochs=6, batch_size=64, l1=0.0,
                 l2=0.0, d_model=64, heads=4, blocks=2, context=None),
    "text": dict(optimizer="adam", lr=2e-3, decay=(0.5, 1000), epochs=30, batch_size=32,
                 l1=0.0, l2=0.0, d_model=64, heads=4, blocks=2, context=64),
}


def _hidden_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        sizes = ()
    if not sizes or any(s <= 0 for s in sizes):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a list of positive layer widths; expected e.g. 32,32 (or 64).")
    return sizes


def _number(low: float, strict: bool, what: str):
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            v = float("nan")
        if not (v > low if strict else v >= low) or v != v or v == float("inf"):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return v

    return parse


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = 0
    if v <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return v


HELP = "train a network (default: XOR by hand-derived backprop)"
DESCRIPTION = ("Train an MLP (or on digits, with --model cnn a CNN, with --model resnet a "
               "residual CNN with batch norm; on the sequence tasks sort "
               "and text --file FILE, a transformer) by hand-derived backprop (or autodiff) "
               "under jit. Checks the manual gradients against jax.grad first; ends with the "
               "final metrics, one per line as 'name: value' (text: then a generated sample).")


def add_arguments(train) -> None:
    from jaxbp.layers import ACTIVATIONS
    from jaxbp.optim import OPTIMIZERS

    train.add_argument("dataset", nargs="?", default="xor",
                       choices=sorted([*TRAIN_DEFAULTS, *SEQUENCE_DEFAULTS]),
                       help="data set (default xor); sort: sorting digit strings; text: a "
                            "character-level language model on --file FILE")
    train.add_argument("--model", choices=["mlp", "cnn", "resnet", "transformer"],
                       default=None,
                       help="mlp (default), or cnn: a small convolutional network on the "
                            "digits images (--hidden sets its two stages' channels), or "
                            "resnet: a residual CNN with batch norm on them (--hidden: the "
                            "channels of each residual block, e.g. 32,32), or "
                            "transformer (the default and only model of sort and text)")
    train.add_argument("--hidden", type=_hidden_sizes, help="hidden widths, e.g. 32,32")
    train.add_argument("--activation", choices=sorted(ACTIVATIONS), help="hidden activation")
    opt = train.add_mutually_exclusive_group()
    opt.add_argument("--optimizer", choices=sorted(OPTIMIZERS),
                     help="a hand-written optimizer (jaxbp.optim)")
    opt.add_argument("--optax", metavar="NAME", help="an optax optimizer instead, e.g. adamw")
    train.add_argument("--lr", type=_number(0.0, True, "a positive learning rate"),
                       help="learning rate")
    train.add_argument("--epochs", type=_positive_int, help="epochs")
    train.add_argument("--batch-size", type=_positive_int, help="examples per step")
    train.add_argument("--grad", choices=["backprop", "autodiff"], default="backprop",
                       help="gradient source (default backprop, the hand-derived one)")
    train.add_argument("--l1", type=_number(0.0, False, "a non-negative number"),
                       help="L1 penalty on weights")
    train.add_argument("--l2", type=_number(0.0, False, "a non-negative number"),
                       help="L2 penalty on weights")
    train.add_argument("--dropout", type=_number(0.0, False, "a probability in [0, 1)"),
                       default=0.0, help="drop probability after each hidden layer")
    train.add_argument("--patience", type=_positive_int,
                       help="early stopping: epochs without improvement; restores the best")
    train.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    train.add_argument("--devices", type=_positive_int, metavar="N",
                       help="data parallel over the first N devices (batch sharded, parameters "
                            "replicated); on CPU simulate N devices with XLA_FLAGS="
                            "--xla_force_host_platform_device_count=N")
    train.add_argument("--checkpoint", metavar="DIR",
                       help="save the training state to DIR after every epoch (atomically)")
    train.add_argument("--resume", action="store_true",
                       help="continue the run saved in --checkpoint DIR up to --epochs in total")
    seq = train.add_argument_group("sequence tasks (sort, text)")
    seq.add_argument("--file", metavar="FILE", help="text: the text file to learn")
    seq.add_argument("--context", type=_positive_int,
                     help="text: characters the model sees (default 64)")
    seq.add_argument("--d-model", type=_positive_int, help="transformer width (default 64)")
    seq.add_argument("--heads", type=_positive_int, help="attention heads (default 4)")
    seq.add_argument("--blocks", type=_positive_int, help="transformer blocks (default 2)")
    seq.add_argument("--temperature", type=_number(0.0, False, "a non-negative temperature"),
                     default=0.8, help="text: sampling temperature (0: greedy; default 0.8)")
    seq.add_argument("--sample-length", type=_positive_int, default=300,
                     help="text: characters to generate at the end (default 300)")
    train.add_argument("--no-progress", action="store_true", help="no progress output")
    train.add_argument("--plot", metavar="FILE.png",
                       help="write loss/accuracy curves (and a 2-D decision boundary)")
    train.add_argument("--log", metavar="FILE",
                       help="append each epoch's metrics to FILE as it trains: JSON lines, or "
                            "CSV for FILE.csv; continued with --resume; 'jaxbp plot FILE' "
                            "draws it")


__all__ = ["CNN_DEFAULTS", "DESCRIPTION", "HELP", "IMAGE_MODELS", "RESNET_DEFAULTS",
           "SEQUENCE_DEFAULTS", "TRAIN_DEFAULTS",
           "add_arguments"]
