"""``jaxbp check``: verify the hand-derived gradients of every built-in layer and loss."""

from __future__ import annotations

HELP = "verify the hand-derived gradients of every built-in layer and loss (exit 1 on any failure)"
DESCRIPTION = ("Check every built-in layer and loss against autodiff and finite differences "
               "(float64), printing each report table; exit 1 on any failure.")


def add_arguments(parser) -> None:
    parser.add_argument("--only", metavar="NAME", help="only cases whose name contains NAME")
    parser.add_argument("--draws", type=int, default=2, help="draws per batch size (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")


def run(args) -> int:
    from jaxbp._builtin_cases import run_builtin_checks

    return run_builtin_checks(only=args.only, draws=args.draws, seed=args.seed)
