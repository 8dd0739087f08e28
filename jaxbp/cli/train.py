"""``jaxbp train [xor|spirals|moons|digits]``: train a network from the command line.

With no arguments it trains XOR by hand-derived backprop under ``jit``: it first checks the
manual gradients against ``jax.grad``, then shows progress and the final predictions.
"""

from __future__ import annotations

import argparse
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np


# --------------------------------------------------------------------------------------
# jaxbp train [xor|spirals|moons|digits]

# Per data set: the network, optimizer and schedule that reach the README's targets.
# ``decay = (rate, steps)`` multiplies the learning rate by ``rate`` every ``steps`` updates.
TRAIN_DEFAULTS = {
    "xor": dict(hidden=(8,), activation="tanh", optimizer="sgd", lr=2.0, decay=None,
                epochs=2000, batch_size=4, l1=0.0, l2=0.0),
    "spirals": dict(hidden=(32, 32), activation="tanh", optimizer="adam", lr=0.01, decay=None,
                    epochs=300, batch_size=32, l1=0.0, l2=0.0),
    "moons": dict(hidden=(16, 16), activation="tanh", optimizer="adam", lr=0.01, decay=None,
                  epochs=100, batch_size=32, l1=0.0, l2=0.0),
    "digits": dict(hidden=(256,), activation="relu", optimizer="adam", lr=0.002,
                   decay=(0.1, 3000), epochs=100, batch_size=32, l1=0.0, l2=1e-4),
}

# ``--model cnn`` (digits only): the network of examples/digits_cnn.py, on 8x8x1 images with
# pixels scaled to [0, 1]; ``hidden`` are its two convolution stages' channels.
CNN_DEFAULTS = dict(hidden=(16, 32), activation="relu", optimizer="adam", lr=3e-3, decay=None,
                    epochs=30, batch_size=32, l1=0.0, l2=0.0)


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
DESCRIPTION = ("Train an MLP (or on digits, with --model cnn, a CNN) by hand-derived backprop (or "
               "autodiff) under jit. Checks the manual gradients against jax.grad first; ends "
               "with the final metrics, one per line as 'name: value'.")


def add_arguments(train) -> None:
    from jaxbp.layers import ACTIVATIONS
    from jaxbp.optim import OPTIMIZERS

    train.add_argument("dataset", nargs="?", default="xor", choices=sorted(TRAIN_DEFAULTS),
                       help="data set (default xor)")
    train.add_argument("--model", choices=["mlp", "cnn"], default="mlp",
                       help="mlp (default), or cnn: a small convolutional network on the "
                            "digits images (--hidden sets its two stages' channels)")
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
    train.add_argument("--no-progress", action="store_true", help="no progress output")
    train.add_argument("--plot", metavar="FILE.png",
                       help="write loss/accuracy curves (and a 2-D decision boundary)")


def _gradient_check(net, loss, params, x, y, *, l1, l2, key) -> float:
    """Max relative error between hand-derived backprop and jax.grad, in float64."""
    import jaxbp as bp

    with jax.enable_x64(True):
        def to64(a):
            return a.astype(jnp.float64) if jnp.issubdtype(a.dtype, jnp.floating) else a

        def both(params, x, y):  # one compilation for the two gradient sources
            p64 = jax.tree_util.tree_map(to64, params)
            x64, y64 = to64(x), to64(y)
            return (bp.backprop(net, loss, l1=l1, l2=l2)(p64, x64, y64, key=key)[1],
                    bp.autodiff(net, loss, l1=l1, l2=l2)(p64, x64, y64, key=key)[1])

        manual, auto = jax.jit(both)(params, x, y)
        return max(float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))
                   for a, b in zip(map(np.asarray, jax.tree_util.tree_leaves(manual)),
                                   map(np.asarray, jax.tree_util.tree_leaves(auto))))


def _build(dataset: str, hidden, activation: str, drop_prob: float, num_classes: int):
    import jaxbp as bp
    from jaxbp.layers import ACTIVATIONS

    layers = []
    for width in hidden:
        layers += [bp.dense(width), ACTIVATIONS[activation]()]
        if drop_prob:
            if not hasattr(bp, "dropout"):
                raise ValueError("--dropout needs the dropout layer, which this version of jaxbp "
                                 "does not have. Fix: drop --dropout.")
            layers.append(bp.dropout(drop_prob))
    if dataset == "xor":  # the classical set-up: a sigmoid output and the squared error
        return bp.serial(*layers, bp.dense(1), bp.sigmoid()), bp.mse()
    return bp.serial(*layers, bp.dense(num_classes)), bp.softmax_cross_entropy()


def _build_cnn(channels, activation: str, drop_prob: float):
    """conv-act-maxpool twice, flatten, (dropout), dense(10) for (8, 8, 1) digits images."""
    import jaxbp as bp
    from jaxbp.layers import ACTIVATIONS

    if len(channels) != 2:
        raise ValueError(f"--model cnn: --hidden {','.join(map(str, channels))} must give the "
                         f"channels of the two convolution stages, e.g. --hidden 16,32.")
    layers = []
    for c in channels:
        layers += [bp.conv2d(c, 3), ACTIVATIONS[activation](), bp.max_pool(2)]
    layers.append(bp.flatten())
    if drop_prob:
        layers.append(bp.dropout(drop_prob))
    return bp.serial(*layers, bp.dense(10)), bp.softmax_cross_entropy()


def _digits_images(seed: int):
    """The digits split as ``data.load`` splits it, as (8, 8, 1) images scaled to [0, 1].

    Not standardised per pixel: a convolution shares its weights across positions, so every
    position should keep the same scale.
    """
    from jaxbp import data

    splits = data.split(*data.digits(), seed=seed)
    train, val, test = (data.Split(s.x.reshape(-1, 8, 8, 1) / 16.0, s.y) for s in splits)
    return data.Dataset("digits", train, val, test, 10)


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
                             f"lamb or lion.")
        return opt, f"optax.{args.optax}(learning_rate={lr_name})"
    name = cfg["optimizer"]
    return OPTIMIZERS[name](lr), f"jaxbp.optim.{name}(learning_rate={lr_name})"


def run(args, out=print) -> int:
    import jaxbp as bp
    from jaxbp import data, plot, train

    given = {"hidden": args.hidden, "activation": args.activation, "optimizer": args.optimizer,
             "lr": args.lr, "epochs": args.epochs, "batch_size": args.batch_size,
             "l1": args.l1, "l2": args.l2}
    cnn = getattr(args, "model", "mlp") == "cnn"
    defaults = CNN_DEFAULTS if cnn else TRAIN_DEFAULTS[args.dataset]
    cfg = {**defaults, **{k: v for k, v in given.items() if v is not None}}
    try:
        if not args.dropout < 1.0:
            raise ValueError(f"--dropout {args.dropout:g} must be a probability in [0, 1).")
        if args.plot:
            plot._check_path(args.plot)
            plot.require_matplotlib()
        if cnn and args.dataset != "digits":
            raise ValueError(f"--model cnn works on image data, i.e. digits, not "
                             f"{args.dataset!r}. Fix: jaxbp train digits --model cnn.")
        if cnn:
            ds = _digits_images(args.seed)
            net, loss = _build_cnn(cfg["hidden"], cfg["activation"], args.dropout)
        else:
            ds = data.load(args.dataset, seed=args.seed)
            net, loss = _build(args.dataset, cfg["hidden"], cfg["activation"], args.dropout,
                               ds.num_classes)
        optimizer, opt_name = _make_optimizer(args, cfg)
        resume_from = _resume_from(args)
    except (ValueError, TypeError, ImportError) as e:
        print(f"jaxbp train: error: {e}", file=sys.stderr)
        return 2

    k_init, k_fit, k_check = jax.random.split(jax.random.key(args.seed), 3)
    params = jax.jit(lambda key: net.init(key, ds.train.x.shape[1:])[0])(k_init)
    sizes = " / ".join(f"{len(s.x)} {n}" for n, s in
                       (("train", ds.train), ("val", ds.val), ("test", ds.test)) if s is not None)
    out(f"data: {args.dataset}, {sizes} examples, {ds.num_classes} classes")
    out(f"network: {net.name}, {bp.count_params(params)} parameters; loss {loss.name}")

    # 1. The hand-derived gradients must equal jax.grad before we trust them for training.
    check_key = k_check if args.dropout else None
    n_check = min(16, len(ds.train.x))
    err = _gradient_check(net, loss, params, ds.train.x[:n_check], ds.train.y[:n_check],
                          l1=cfg["l1"], l2=cfg["l2"], key=check_key)
    ok = err <= 1e-10
    out(f"gradient check: hand-derived backprop vs jax.grad (float64), max relative error "
        f"{err:.1e} -> {'OK' if ok else 'MISMATCH'}")
    if not ok:
        print("jaxbp train: the hand-derived backward disagrees with jax.grad", file=sys.stderr)
        return 1

    # 2. Mini-batch training, one compiled lax.scan per epoch.
    source = "hand-derived backprop" if args.grad == "backprop" else "jax.grad (autodiff)"
    out(f"training: {cfg['epochs']} epochs, batch size {cfg['batch_size']}, {opt_name}, "
        f"gradients by {source}, jit-compiled")
    every = max(1, cfg["epochs"] // 10)
    tty = sys.stderr.isatty()

    def log(state, record):
        if not args.no_progress and not tty and (record["epoch"] % every == 0):
            out(f"epoch {record['epoch']:5d}/{cfg['epochs']}  " + "  ".join(
                f"{k} {v:.5f}" for k, v in record.items()
                if k.startswith(("train_", "val_"))))

    validation = None if ds.val is None else (ds.val.x, ds.val.y)
    start_epoch = 0
    if resume_from is not None:
        from jaxbp import checkpoint

        start_epoch = checkpoint.read_manifest(resume_from)["metadata"]["history"]["epoch"][-1]
        out(f"resuming from {resume_from} (epoch {start_epoch})")
    if args.devices:
        out(f"data parallel over {args.devices} devices: {jax.devices()[0].platform}")
    t0 = time.perf_counter()
    result = train.fit(net, loss, optimizer, params, ds.train.x, ds.train.y, key=k_fit,
                       epochs=cfg["epochs"], batch_size=cfg["batch_size"], grad=args.grad,
                       l1=cfg["l1"], l2=cfg["l2"], validation=validation, patience=args.patience,
                       progress=False if args.no_progress else None, callback=log,
                       devices=args.devices, checkpoint_dir=args.checkpoint, resume=args.resume)
    elapsed = time.perf_counter() - t0
    ran = int(result.state.epoch) - start_epoch
    out(f"trained {ran} epochs ({int(result.state.step)} steps) in {elapsed:.2f} s")
    if result.best_epoch is not None:
        out(f"early stopping: kept the parameters of epoch {result.best_epoch} (best "
            f"{'val_loss' if validation else 'train_loss'})")

    if args.dataset == "xor":
        forward = jax.jit(lambda p, x: net.forward(p, x)[0])
        pred = np.asarray(forward(result.params, ds.train.x.astype(_param_dtype(result.params))))
        truth = ds.train.y
        out("predictions:")
        for xi, yi, pi in zip(ds.train.x, truth, pred):
            out(f"  {int(xi[0])} xor {int(xi[1])} = {int(yi[0])}   predicted {pi[0]:.3f}"
                f"  {'ok' if (pi[0] > 0.5) == (yi[0] > 0.5) else 'WRONG'}")
        out(f"correct: {int(np.sum((pred > 0.5) == (truth > 0.5)))}/{len(truth)}")

    metrics = {}
    for name, split in (("train", ds.train), ("val", ds.val), ("test", ds.test)):
        if split is not None:
            for k, v in train.evaluate(net, loss, result.params, split.x, split.y).items():
                metrics[f"{name}_{k}"] = v

    if args.plot:
        x2 = ds.train.x if ds.train.x.shape[1] == 2 else None
        if args.dataset == "xor":
            predict = jax.jit(lambda pts: net.forward(result.params, pts)[0][:, 0])
        else:
            predict = jax.jit(lambda pts: jax.nn.softmax(net.forward(result.params, pts)[0])[:, 1])
        plot.save_training_plot(
            args.plot, result.history, x=x2, y=ds.train.y,
            predict=lambda pts: predict(jnp.asarray(pts, _param_dtype(result.params))),
            title=f"{args.dataset}: {net.name}")
        out(f"wrote {args.plot}")

    for k, v in metrics.items():
        out(f"{k}: {v:.6g}")
    return 0


def _resume_from(args):
    """Checks --devices/--checkpoint/--resume; the checkpoint to resume from, or None."""
    from jaxbp import checkpoint, parallel

    if args.devices:
        parallel.make_mesh(args.devices)  # fails early, naming the devices available
    if args.resume and not args.checkpoint:
        raise ValueError("--resume needs --checkpoint DIR, the directory of the run to continue.")
    found = checkpoint.latest(args.checkpoint) if args.checkpoint else None
    if found is not None and not args.resume:
        raise ValueError(f"--checkpoint {args.checkpoint} already holds {found.name}; pass "
                         f"--resume to continue that run, or choose an empty directory.")
    return found


def _param_dtype(params):
    return jax.tree_util.tree_leaves(params)[0].dtype
