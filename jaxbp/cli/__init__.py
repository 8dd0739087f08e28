"""The ``jaxbp`` console command: it parses, calls the library and prints — nothing more.

Each command is one module of this package with ``HELP``, ``DESCRIPTION``,
``add_arguments(parser)`` and ``run(args) -> exit status``; :data:`COMMANDS` lists them. Adding
a command is one new module and one line in that table.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: Command name -> the module of this package that implements it (imported when used).
COMMANDS = {
    "check": "jaxbp.cli.check",
    "train": "jaxbp.cli.train",
    "sweep": "jaxbp.cli.sweep",
    "plot": "jaxbp.cli.plot",
}


class UsageError(Exception):
    """A user mistake in the flags (exit status 2), raised by a command's ``run``."""


def one_line(error: BaseException | str) -> str:
    """``error``'s message on one line (its type's name if it has none)."""
    return " ".join(str(error).split()) or type(error).__name__


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (problem and fix), exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}. Fix: see '{self.prog} --help'.\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``jaxbp`` parser: one subcommand per entry of :data:`COMMANDS` (each module imported
    here), each with ``--debug``, and ``func`` set to the module's ``run``."""
    parser = OneLineParser(
        prog="jaxbp", description="Hand-derived backpropagation beside jax.grad.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        command = sub.add_parser(name, help=module.HELP, description=module.DESCRIPTION)
        module.add_arguments(command)
        command.add_argument("--debug", action="store_true",
                             help="on an error, show the full Python traceback")
        command.set_defaults(func=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs the command ``argv`` asks for; returns its exit status.

    Every error is one line on stderr, ``jaxbp <command>: error: <problem>. Fix: ...``, with
    exit status 2 for a usage mistake (a bad flag: argparse's own, or :class:`UsageError`) and
    1 for a run that failed (divergence, a damaged checkpoint, a file that cannot be written).
    ``--debug`` lets the exception through, with its traceback.
    """
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except Exception as e:
        if getattr(args, "debug", False):
            raise
        print(f"jaxbp {args.command}: error: {one_line(e)}", file=sys.stderr)
        return 2 if isinstance(e, UsageError) else 1


__all__ = ["COMMANDS", "OneLineParser", "UsageError", "build_parser", "main", "one_line"]
