"""``jaxbp sweep DATASET``: many learning rates (and seeds) trained at once, or the
learning-rate range test (``--find-lr``).

The network and its defaults are the train command's (:mod:`jaxbp.cli.train_flags`,
:mod:`jaxbp.models`); the sweep is :func:`jaxbp.sweep`, the range test
:func:`jaxbp.find_learning_rate`. This module parses, calls them and prints.
"""

from __future__ import annotations

import math

import numpy as np

from jaxbp._validate import fail, int_at_least
from jaxbp.cli import UsageError, one_line
from jaxbp.cli.train_flags import TRAIN_DEFAULTS

HELP = "train many learning rates (and seeds) at once, or run the learning-rate range test"
DESCRIPTION = ("Train the train command's network for every learning rate (x every seed) as one "
               "vmap-ed compiled program per epoch, and print each setting's final train and "
               "validation loss and accuracy and the best setting. With --find-lr, run the "
               "learning-rate range test instead (one run with an exponentially growing rate) "
               "and print the suggested rate and range. The learning rate is constant (the "
               "train command's digits decay is not applied).")

LR_EXAMPLE = "--lr 1e-4:1:16"


def add_arguments(parser) -> None:
    """The flags of ``jaxbp sweep``."""
    from jaxbp.optim import OPTIMIZERS

    parser.add_argument("dataset", choices=sorted(TRAIN_DEFAULTS), help="data set")
    parser.add_argument("--lr", metavar="LO:HI:N",
                        help="N learning rates log-spaced from LO to HI, or a list such as "
                             "0.001,0.01,0.1 (default 1e-4:1:9); with --find-lr, the range "
                             "LO:HI of the test and N its steps (default 1e-6:10:100)")
    parser.add_argument("--seeds", metavar="N", default="1",
                        help="seeds 0..N-1 for each learning rate: initialisation, shuffling, "
                             "dropout (default 1)")
    parser.add_argument("--epochs", metavar="N", help="epochs (default: the data set's)")
    parser.add_argument("--batch-size", metavar="N", help="examples per step")
    parser.add_argument("--optimizer", choices=sorted(OPTIMIZERS),
                        help="a hand-written optimizer (default: the data set's)")
    parser.add_argument("--find-lr", action="store_true",
                        help="run the learning-rate range test instead of a sweep")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--plot", metavar="FILE.png",
                        help="a sweep: final validation loss against learning rate and the "
                             "learning curves; --find-lr: the range test's loss curve")


def _count(flag: str, text, example: str) -> int | None:
    """A positive int flag (``None`` if unset), or the one-line usage error."""
    if text is None:
        return None
    try:
        value = int(text)
    except ValueError:
        value = text
    return int_at_least("", flag, value, 1, example)


def _rates(text: str, find: bool) -> tuple[list[float], int | None]:
    """``--lr``: the rates (``LO:HI:N`` log-spaced, or a comma list), and ``N`` if given."""
    expected = ("LO:HI:N (N learning rates log-spaced from LO to HI, 0 < LO < HI) or a "
                "comma-separated list of positive numbers")
    example = "--lr 1e-6:10" if find else LR_EXAMPLE
    parts = text.split(":")
    try:
        if len(parts) in (2, 3) and (find or len(parts) == 3):
            lo, hi = float(parts[0]), float(parts[1])
            n = int(parts[2]) if len(parts) == 3 else None
            ok = 0 < lo < hi < math.inf and (n is None or n >= (3 if find else 1))
            if ok and find:
                return [lo, hi], n
            if ok and n is not None:  # not find: LO:HI:N, so n is given
                return list(np.geomspace(lo, hi, n)), n
        elif len(parts) == 1 and not find:
            rates = [float(v) for v in text.split(",") if v.strip()]
            if rates and all(0 < r < math.inf for r in rates):
                return rates, None
    except ValueError:
        pass
    fail("", "--lr", text, expected, example)


def _setup(args):
    """The data set, model, optimizer factory and settings the flags ask for."""
    from jaxbp import data, models, plot
    from jaxbp.optim import OPTIMIZERS

    cfg = TRAIN_DEFAULTS[args.dataset]
    default = "1e-6:10:100" if args.find_lr else "1e-4:1:9"
    rates, n = _rates(args.lr or default, args.find_lr)
    seeds = _count("--seeds", args.seeds, "--seeds 3")
    epochs = _count("--epochs", args.epochs, "--epochs 20") or cfg["epochs"]
    batch_size = _count("--batch-size", args.batch_size, "--batch-size 32") or cfg["batch_size"]
    if args.plot:
        plot.check_path(args.plot)
        plot.require_matplotlib()
    ds = data.load(args.dataset, seed=0)
    net, loss = models.mlp(cfg["hidden"], ds.num_classes, cfg["activation"],
                           output=cfg["output"])
    name = args.optimizer or cfg["optimizer"]
    return dict(ds=ds, net=net, loss=loss, optimizer=OPTIMIZERS[name], opt_name=name,
                rates=rates, steps=n, seeds=seeds, epochs=epochs, batch_size=batch_size,
                l1=cfg["l1"] or None, l2=cfg["l2"] or None)


def _cell(history: dict, key: str) -> str:
    if not history.get(key):
        return "-"
    return f"{history[key][-1]:.4f}" if key.endswith("accuracy") else f"{history[key][-1]:.4g}"


def _table(result, out) -> None:
    """One line per run: its setting and final train/validation loss and accuracy."""
    keys = ("train_loss", "train_accuracy", "val_loss", "val_accuracy")
    out(f"{'learning_rate':>13}  {'seed':>4}  " + "  ".join(f"{k:>14}" for k in keys))
    for k, (setting, history) in enumerate(zip(result.settings, result.histories)):
        head = f"{setting['learning_rate']:13.4g}  {setting['seed']:4d}  "
        if result.diverged[k]:
            out(head + f"diverged (non-finite in epoch {len(history.get('epoch', [])) + 1})")
        else:
            out(head + "  ".join(f"{_cell(history, key):>14}" for key in keys)
                + ("   <- best" if k == result.best else ""))


def _sweep(args, s, out) -> int:
    import jaxbp as bp
    from jaxbp import plot

    ds = s["ds"]
    validation = None if ds.val is None else (ds.val.x, ds.val.y)
    out(f"sweep: {args.dataset}, {s['net'].name}, {s['opt_name']}, {len(s['rates'])} learning "
        f"rates x {s['seeds']} seed(s) = {len(s['rates']) * s['seeds']} runs, {s['epochs']} "
        f"epochs, batch size {s['batch_size']}: one vmap-ed compiled epoch per epoch")
    result = bp.sweep(s["net"], s["loss"], s["optimizer"], ds.train.x, ds.train.y,
                      epochs=s["epochs"], batch_size=s["batch_size"],
                      learning_rates=s["rates"], seeds=range(s["seeds"]), l1=s["l1"],
                      l2=s["l2"], validation=validation,
                      progress=False if args.no_progress else None)
    _table(result, out)
    if args.plot:
        plot.save_sweep_plot(args.plot, result, title=f"{args.dataset}: {s['net'].name}, "
                                                      f"{s['opt_name']}")
        out(f"wrote {args.plot}")
    if result.best is None:
        raise RuntimeError(f"every run diverged (loss or parameters non-finite). Fix: smaller "
                           f"learning rates, e.g. --lr {min(s['rates']) / 1e3:g}:"
                           f"{min(s['rates']):g}:8.")
    best = result.settings[result.best]
    monitor = "val_loss" if validation is not None else "train_loss"
    out(f"best: learning_rate {best['learning_rate']:.4g}, seed {best['seed']}: {monitor} "
        f"{result.histories[result.best][monitor][-1]:.6g}")
    return 0


def _find(args, s, out) -> int:
    import jaxbp as bp
    from jaxbp import plot

    (lo, hi), steps = s["rates"], s["steps"] or 100
    out(f"learning-rate range test: {args.dataset}, {s['net'].name}, {s['opt_name']}, {steps} "
        f"steps from {lo:g} to {hi:g}, batch size {s['batch_size']}")
    test = bp.find_learning_rate(s["net"], s["loss"], s["optimizer"], s["ds"].train.x,
                                 s["ds"].train.y, min_lr=lo, max_lr=hi, steps=steps,
                                 batch_size=s["batch_size"], l1=s["l1"] or 0.0,
                                 l2=s["l2"] or 0.0)
    if args.plot:
        plot.save_lr_test_plot(args.plot, test, title=f"{args.dataset}: range test, "
                                                      f"{s['opt_name']}")
        out(f"wrote {args.plot}")
    out("diverged at: " + ("never" if test.diverged_at is None else f"{test.diverged_at:.4g}"))
    if test.suggested is None or test.range is None:  # both or neither are None
        raise RuntimeError(f"the loss never fell between {lo:g} and {hi:g}. Fix: a wider or "
                           f"higher range, e.g. --lr {lo:g}:{hi * 100:g}.")
    out(f"suggested range: {test.range[0]:.4g} to {test.range[1]:.4g}")
    out(f"suggested learning rate: {test.suggested:.4g}")
    return 0


def run(args, out=print) -> int:
    """Runs ``jaxbp sweep``; returns the exit status (errors are raised, see jaxbp.cli)."""
    try:
        s = _setup(args)
    except (ValueError, TypeError, ImportError) as e:
        raise UsageError(one_line(e)) from e
    return _find(args, s, out) if args.find_lr else _sweep(args, s, out)


__all__ = ["DESCRIPTION", "HELP", "add_arguments", "run"]
