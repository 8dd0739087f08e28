"""``jaxbp plot FILE``: redraw a run's loss and accuracy curves from its metrics log."""

from __future__ import annotations

from pathlib import Path

from jaxbp.cli import UsageError, one_line

HELP = "redraw the loss/accuracy curves of a run from its --log FILE"
DESCRIPTION = ("Read a metrics log written by 'jaxbp train --log FILE' (JSON lines or CSV) and "
               "draw its loss and accuracy curves per epoch to a PNG file.")


def add_arguments(parser) -> None:
    parser.add_argument("log", metavar="FILE", help="the metrics log (.jsonl or .csv)")
    parser.add_argument("--out", metavar="FILE.png",
                        help="the image to write (default: FILE with the suffix .png)")


def run(args, out=print) -> int:
    """Draws the curves of ``args.log`` to ``args.out``; returns 0."""
    from jaxbp import plot
    from jaxbp.train.log import read_log

    target = args.out or str(Path(args.log).with_suffix(".png"))
    try:
        history = read_log(args.log)
        plot.check_path(target)
        plot.require_matplotlib()
    except (OSError, ValueError, ImportError) as e:
        raise UsageError(one_line(e)) from e
    plot.save_training_plot(target, history, title=Path(args.log).name)
    epochs = history.get("epoch", [])
    out(f"read {len(epochs)} epoch(s) from {args.log}; wrote {target}")
    return 0
