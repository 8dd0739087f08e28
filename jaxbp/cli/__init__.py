"""The ``jaxbp`` console command: it parses, calls the library and prints — nothing more.

Each command is one module of this package with ``HELP``, ``DESCRIPTION``,
``add_arguments(parser)`` and ``run(args) -> exit status``; :data:`COMMANDS` lists them. Adding
a command is one new module and one line in that table.
"""

from __future__ import annotations

import argparse
import importlib

#: Command name -> the module of this package that implements it (imported when used).
COMMANDS = {
    "check": "jaxbp.cli.check",
    "train": "jaxbp.cli.train",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxbp", description="Hand-derived backpropagation beside jax.grad.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        command = sub.add_parser(name, help=module.HELP, description=module.DESCRIPTION)
        module.add_arguments(command)
        command.set_defaults(func=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


__all__ = ["COMMANDS", "build_parser", "main"]
