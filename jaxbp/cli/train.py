"""``jaxbp train [xor|spirals|moons|digits|sort|text]``: train a network from the command line.

With no arguments it trains XOR by hand-derived backprop under ``jit``: it first checks the
manual gradients against ``jax.grad``, then shows progress and the final predictions.

The flags and their per-data-set defaults are in :mod:`jaxbp.cli.train_flags`; the networks
come from :mod:`jaxbp.models`, training and resuming from :mod:`jaxbp.train`. This module only
puts them together and prints.
"""

from __future__ import annotations

import sys
import time
import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxbp.check import backprop_vs_autodiff
from jaxbp.checkpoint import CheckpointDamaged, CheckpointMismatch, DamagedCheckpointWarning
from jaxbp.cli import UsageError, one_line
from jaxbp.train.diverge import TrainingDiverged
from jaxbp.cli.train_flags import (CNN_DEFAULTS, DESCRIPTION, HELP, IMAGE_MODELS,
                                   SEQUENCE_DEFAULTS,
                                   TRAIN_DEFAULTS, add_arguments)
from jaxbp.cli import train_sequence


class _Setup(NamedTuple):
    """What the flags ask for, built and checked before anything is trained."""

    cfg: dict  # TRAIN_DEFAULTS / IMAGE_MODELS' defaults overridden by the flags given
    ds: Any  # jaxbp.data.Dataset
    net: Any
    loss: Any
    optimizer: Any
    opt_name: str
    resume_from: Any  # the checkpoint to continue from, or None
    chars: str | None = None  # text: the vocabulary, character i being token i
    log: Any = None  # --log FILE: the MetricsLog fit appends to, or None


def _settings(args) -> dict:
    given = {"hidden": args.hidden, "activation": args.activation, "optimizer": args.optimizer,
             "lr": args.lr, "epochs": args.epochs, "batch_size": args.batch_size,
             "l1": args.l1, "l2": args.l2}
    if train_sequence.is_sequence(args):
        given.update(train_sequence.given(args))
    return {**_defaults(args), **{k: v for k, v in given.items() if v is not None}}


def _defaults(args) -> dict:
    if train_sequence.is_sequence(args):
        return SEQUENCE_DEFAULTS[args.dataset]
    model = _image_model(args)
    return IMAGE_MODELS[model] if model else TRAIN_DEFAULTS[args.dataset]


def _image_model(args) -> str | None:
    """``"cnn"`` or ``"resnet"`` when ``--model`` names an image model, else None."""
    model = getattr(args, "model", "mlp")
    return model if model in IMAGE_MODELS else None


def _check_flags(args, cfg) -> None:
    from jaxbp import plot

    if not args.dropout < 1.0:
        raise ValueError(f"--dropout {args.dropout:g} must be a probability in [0, 1) (of "
                         f"dropping a unit). Fix: e.g. --dropout 0.2.")
    if args.plot:
        plot.check_path(args.plot)
        plot.require_matplotlib()
    train_sequence.check_flags(args)
    model = _image_model(args)
    if model and args.dataset != "digits":
        raise ValueError(f"--model {model} works on image data, i.e. digits, not "
                         f"{args.dataset!r}. Fix: jaxbp train digits --model {model}.")
    hidden = ",".join(map(str, cfg.get("hidden", ())))
    if model == "cnn" and len(cfg["hidden"]) != 2:
        raise ValueError(f"--model cnn: --hidden {hidden} must give "
                         f"the channels of the two convolution stages. Fix: e.g. --hidden 16,32.")
    if model == "resnet" and len(set(cfg["hidden"])) != 1:
        raise ValueError(f"--model resnet: --hidden {hidden} must give one channel count per "
                         f"residual block, all equal (a block keeps its width). Fix: e.g. "
                         f"--hidden 32,32 for two blocks of 32 channels.")


def _model(args, cfg):
    """The data set and ``models.Model(net, loss)`` the flags ask for."""
    from jaxbp import data, models

    if train_sequence.is_sequence(args):
        return train_sequence.model(args, cfg)
    if _image_model(args) == "cnn":
        return models.digits_images(args.seed), models.digits_cnn(
            cfg["hidden"], cfg["activation"], args.dropout)
    if _image_model(args) == "resnet":
        return models.digits_images(args.seed), models.digits_resnet(
            cfg["hidden"][0], len(cfg["hidden"]), args.dropout)
    ds = data.load(args.dataset, seed=args.seed)
    return ds, models.mlp(cfg["hidden"], ds.num_classes, cfg["activation"], args.dropout,
                          output=cfg["output"])


def _make_optimizer(args, cfg):
    import optax

    from jaxbp.optim import OPTIMIZERS, exponential_decay

    lr, lr_name = cfg["lr"], f"{cfg['lr']:g}"
    if cfg["decay"] is not None:
        lr = exponential_decay(cfg["lr"], *cfg["decay"])
        lr_name = f"exponential_decay({cfg['lr']:g}, {cfg['decay'][0]:g}, {cfg['decay'][1]})"
    if args.optax:
        factory = getattr(optax, args.optax, None)
        opt = None
        if callable(factory):
            try:
                opt = factory(learning_rate=lr)
            except TypeError:
                opt = None
        if not (hasattr(opt, "init") and hasattr(opt, "update")):
            raise ValueError(f"--optax {args.optax!r} is not an optax optimizer taking a "
                             f"learning_rate; expected a name such as adam, adamw, sgd, rmsprop, "
                             f"lamb or lion. Fix: e.g. --optax adamw.")
        return opt, f"optax.{args.optax}(learning_rate={lr_name})"
    name = cfg["optimizer"]
    return OPTIMIZERS[name](lr), f"jaxbp.optim.{name}(learning_rate={lr_name})"


def _resume_from(args):
    """Checks --devices/--checkpoint/--resume; the checkpoint to resume from, or None. A
    damaged checkpoint skipped for an older one is one warning line on stderr."""
    from jaxbp import parallel
    from jaxbp.train import runs

    if args.devices:
        parallel.make_mesh(args.devices)  # fails early, naming the devices available
    spelling = runs.Spelling("", "--resume", "--checkpoint DIR", "--checkpoint {}",
                             "jaxbp train --checkpoint runs/x --resume")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DamagedCheckpointWarning)
        found = runs.to_resume(args.checkpoint or None, args.resume, spelling)
    for w in caught:
        print(f"jaxbp train: warning: {one_line(w.message)}", file=sys.stderr)
    return found


def _setup(args) -> _Setup:
    cfg = _settings(args)
    _check_flags(args, cfg)
    ds, (net, loss), *chars = _model(args, cfg)
    optimizer, opt_name = _make_optimizer(args, cfg)
    resume_from = _resume_from(args)
    return _Setup(cfg, ds, net, loss, optimizer, opt_name, resume_from,
                  chars=chars[0] if chars else None, log=_metrics_log(args, resume_from))


def _metrics_log(args, resume_from):
    """--log FILE: the log fit appends to (continued, its gaps filled from the checkpoint's
    history, on --resume); a log of another run is refused before anything trains."""
    if not args.log:
        return None
    from jaxbp.train import runs
    from jaxbp.train.log import MetricsLog

    history = runs.saved_history(resume_from) if resume_from is not None else None
    try:
        return MetricsLog(args.log, resume=resume_from is not None, history=history)
    except (OSError, ValueError) as e:
        raise UsageError(f"--log {args.log}: {one_line(e)}") from e


def _check_gradients(s: _Setup, params, key, out) -> bool:
    """1. The hand-derived gradients must equal jax.grad before we trust them for training."""
    n_check = min(16, len(s.ds.train.x))
    err = backprop_vs_autodiff(s.net, s.loss, params, s.ds.train.x[:n_check],
                               s.ds.train.y[:n_check], l1=s.cfg["l1"], l2=s.cfg["l2"], key=key)
    ok = err <= 1e-10
    out(f"gradient check: hand-derived backprop vs jax.grad (float64), max relative error "
        f"{err:.1e} -> {'OK' if ok else 'MISMATCH'}")
    if not ok:
        print("jaxbp train: the hand-derived backward disagrees with jax.grad", file=sys.stderr)
    return ok


def _logger(args, epochs: int, out, metrics_log=None):
    """fit's callback: ten log lines when stderr is no terminal (the bar's place), and each
    record appended to --log FILE."""
    every = max(1, epochs // 10)
    tty = sys.stderr.isatty()

    def log(state, record):
        if metrics_log is not None:
            metrics_log(state, record)
        if not args.no_progress and not tty and (record["epoch"] % every == 0):
            out(f"epoch {record['epoch']:5d}/{epochs}  " + "  ".join(
                f"{k} {v:.5f}" for k, v in record.items()
                if k.startswith(("train_", "val_"))))

    return log


def _train(args, s: _Setup, params, key, out):
    """2. Mini-batch training, one compiled lax.scan per epoch."""
    from jaxbp import train
    from jaxbp.train import runs

    cfg = s.cfg
    source = "hand-derived backprop" if args.grad == "backprop" else "jax.grad (autodiff)"
    out(f"training: {cfg['epochs']} epochs, batch size {cfg['batch_size']}, {s.opt_name}, "
        f"gradients by {source}, jit-compiled")
    validation = None if s.ds.val is None else (s.ds.val.x, s.ds.val.y)
    start_epoch = 0
    if s.resume_from is not None:
        start_epoch = runs.saved_epoch(s.resume_from)
        out(f"resuming from {s.resume_from} (epoch {start_epoch})")
    elif args.resume:
        out(f"--resume: no checkpoint in {args.checkpoint} yet; starting afresh")
    if args.devices:
        out(f"data parallel over {args.devices} devices: {jax.devices()[0].platform}")
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():  # _resume_from has reported damaged checkpoints
            warnings.simplefilter("ignore", DamagedCheckpointWarning)
            result = train.fit(
                s.net, s.loss, s.optimizer, params, s.ds.train.x, s.ds.train.y, key=key,
                epochs=cfg["epochs"], batch_size=cfg["batch_size"], grad=args.grad,
                l1=cfg["l1"], l2=cfg["l2"], validation=validation, patience=args.patience,
                progress=False if args.no_progress else None,
                callback=_logger(args, cfg["epochs"], out, s.log), devices=args.devices,
                checkpoint_dir=args.checkpoint, resume=args.resume)
    except CheckpointMismatch as e:
        detail = str(e).split(": ", 1)[-1].split(". Fix:")[0].replace("the template", "this run")
        raise UsageError(
            f"--resume: {s.resume_from} was written by a run of another network or optimizer "
            f"({detail}). Fix: use the same --model, --hidden and --optimizer as the run that "
            f"wrote it, or a new --checkpoint DIR.") from e
    except TrainingDiverged as e:
        at = f" at step {e.step}" if e.step else ""
        raise RuntimeError(
            f"training diverged in epoch {e.epoch}{at}: {e.leaf} went non-finite (nan or inf); "
            f"no checkpoint was written for that epoch. Fix: a smaller learning rate, e.g. "
            f"--lr {cfg['lr'] / 10:g}.") from e
    elapsed = time.perf_counter() - t0
    ran = int(result.state.epoch) - start_epoch
    out(f"trained {ran} epochs ({int(result.state.step)} steps) in {elapsed:.2f} s")
    if result.best_epoch is not None:
        out(f"early stopping: kept the parameters of epoch {result.best_epoch} (best "
            f"{'val_loss' if validation else 'train_loss'})")
    return result


def _print_xor(s: _Setup, params, out) -> None:
    pred = np.asarray(_predictor(s.net, params, None)(s.ds.train.x.astype(_param_dtype(params))))
    truth = s.ds.train.y
    out("predictions:")
    for xi, yi, pi in zip(s.ds.train.x, truth, pred):
        out(f"  {int(xi[0])} xor {int(xi[1])} = {int(yi[0])}   predicted {pi[0]:.3f}"
            f"  {'ok' if (pi[0] > 0.5) == (yi[0] > 0.5) else 'WRONG'}")
    out(f"correct: {int(np.sum((pred > 0.5) == (truth > 0.5)))}/{len(truth)}")


def _metrics(s: _Setup, params, layer_state) -> dict:
    from jaxbp import train

    metrics = {}
    for name, split in (("train", s.ds.train), ("val", s.ds.val), ("test", s.ds.test)):
        if split is not None:
            for k, v in train.evaluate(s.net, s.loss, params, split.x, split.y,
                                       layer_state=layer_state).items():
                metrics[f"{name}_{k}"] = v
    return metrics


def _predictor(net, params, layer_state):
    """``net``'s jitted prediction in evaluation mode (with its layer state, if any)."""
    from jaxbp._core import call_forward

    return jax.jit(lambda x: call_forward(net, params, x, state=layer_state)[0])


def _plot(args, s: _Setup, result, out) -> None:
    from jaxbp import plot

    params, net = result.params, s.net
    x2 = (s.ds.train.x if s.ds.train.x.shape[1] == 2 and not train_sequence.is_sequence(args)
          else None)
    forward = _predictor(net, params, result.layer_state)
    if s.cfg.get("output") == "sigmoid":
        predict = jax.jit(lambda pts: forward(pts)[:, 0])
    else:
        predict = jax.jit(lambda pts: jax.nn.softmax(forward(pts))[:, 1])
    plot.save_training_plot(
        args.plot, result.history, x=x2, y=s.ds.train.y,
        predict=lambda pts: predict(jnp.asarray(pts, _param_dtype(params))),
        title=f"{args.dataset}: {net.name}")
    out(f"wrote {args.plot}")


def run(args, out=print) -> int:
    import jaxbp as bp

    try:
        s = _setup(args)
    except CheckpointDamaged:
        raise  # not a usage mistake: the run cannot continue (exit 1)
    except (ValueError, TypeError, ImportError) as e:
        raise UsageError(one_line(e)) from e
    k_init, k_fit, k_check = jax.random.split(jax.random.key(args.seed), 3)
    params = jax.jit(lambda key: s.net.init(key, s.ds.train.x.shape[1:])[0])(k_init)
    sizes = " / ".join(f"{len(d.x)} {n}" for n, d in
                       (("train", s.ds.train), ("val", s.ds.val), ("test", s.ds.test))
                       if d is not None)
    kind = "tokens" if train_sequence.is_sequence(args) else "classes"
    out(f"data: {args.dataset}, {sizes} examples, {s.ds.num_classes} {kind}")
    out(f"network: {s.net.name}, {bp.count_params(params)} parameters; loss {s.loss.name}")
    # in training mode where it differs (dropout's mask, batch norm's batch statistics)
    stochastic = args.dropout or bp.init_layer_state(s.net, params) is not None
    if not _check_gradients(s, params, k_check if stochastic else None, out):
        return 1
    initial = bp.evaluate(s.net, s.loss, params, s.ds.train.x, s.ds.train.y,
                          layer_state=bp.init_layer_state(s.net, params))["loss"]
    result = _train(args, s, params, k_fit, out)
    if args.dataset == "xor":
        _print_xor(s, result.params, out)
    if args.dataset == "sort":
        train_sequence.print_sorted(s.net, result.params, s.ds.test, out)
    metrics = _metrics(s, result.params, result.layer_state)
    failed = None
    if args.plot:
        try:
            _plot(args, s, result, out)
        except (OSError, ValueError, ImportError) as e:  # the metrics are printed all the same
            failed = RuntimeError(f"--plot {args.plot}: {one_line(e)}")
    for k, v in metrics.items():
        out(f"{k}: {v:.6g}")
    if s.chars is not None:
        train_sequence.print_sample(args, s, result.params, k_check, out)
    if failed is not None:
        raise failed
    _check_progress(initial, metrics["train_loss"], s.cfg, args)
    return 0


def _check_progress(initial: float, final: float, cfg: dict, args) -> None:
    """A run whose training loss ended above 1.1 times where it started failed: a learning
    rate far too large drives a saturating network there without ever producing nan."""
    if not final <= 1.1 * initial:
        default = _defaults(args)["lr"]
        raise RuntimeError(
            f"training failed: the training loss rose from {initial:.4g} (initial parameters) "
            f"to {final:.4g}; with --lr {cfg['lr']:g} the steps overshoot. Fix: a smaller "
            f"learning rate, e.g. --lr {min(default, cfg['lr'] / 10):g}.")


def _param_dtype(params):
    return jax.tree_util.tree_leaves(params)[0].dtype


# HELP, DESCRIPTION and add_arguments make this module a command of jaxbp.cli.COMMANDS.
__all__ = ["CNN_DEFAULTS", "DESCRIPTION", "HELP", "TRAIN_DEFAULTS", "add_arguments", "run"]
