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
    """Checks every case of ``jaxbp.cases`` (whose name contains ``--only``), printing each
    report; returns 0 when all pass, 1 when any fails or none matches."""
    from jaxbp import cases

    every: list[cases.LayerCase | cases.LossCase] = [*cases.LAYER_CASES, *cases.LOSS_CASES]
    chosen = [case for case in every if not args.only or args.only in case.name]
    if not chosen:
        print(f"no built-in case matches --only {args.only!r}")
        return 1
    failed = []
    for case in chosen:
        report = cases.check_case(case, key=args.seed, draws=args.draws)
        print(f"[{case.name}] {report}\n")
        if not report.ok:
            failed.append(case.name)
    print(f"checked {len(chosen)} built-in layers and losses: "
          + ("all ok" if not failed else f"{len(failed)} FAILED: {', '.join(failed)}"))
    return 1 if failed else 0
