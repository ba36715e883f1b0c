"""The `lift3d` command.

Each subcommand is a module in `pipelines/commands/` exposing
    HELP: str                       one line for `lift3d --help`
    add_arguments(parser) -> None   its options
    run(args, extra: list[str]) -> int   `extra` holds unrecognised flags (Beam pipeline
                                         options pass through there, see DESIGN.md)
Modules import heavy dependencies inside `run`, so `lift3d --help` stays fast.
User mistakes raise `UserError` and print one line, never a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import os
import sys

import pipelines.commands as _commands


class UserError(Exception):
    """A mistake the user can fix (bad path, bad option): printed as one line, exit code 2."""


#: Order in `lift3d --help`; modules not listed here come after, alphabetically.
_ORDER = ["lift", "qa", "run", "export", "demo", "eval", "viz", "stats", "models", "score", "priors", "synth"]


def _command_modules():
    names = [m.name for m in pkgutil.iter_modules(_commands.__path__) if not m.name.startswith("_")]
    names.sort(key=lambda n: (_ORDER.index(n) if n in _ORDER else len(_ORDER), n))
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lift3d",
        description="Lift 2D-annotated images into metric 3D boxes and spatial QA training shards.",
        epilog="Run `lift3d COMMAND --help` for the options of a command. Unrecognised "
        "--flags of lift/qa/run are passed to Apache Beam as pipeline options.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in _command_modules():
        mod = importlib.import_module(f"pipelines.commands.{name}")
        p = sub.add_parser(name, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP),
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(_module=mod)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args._module, "ACCEPTS_PIPELINE_OPTIONS", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(args._module.run(args, extra) or 0)
    except UserError as e:
        print(f"lift3d {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lift3d {args.command}: interrupted", file=sys.stderr)
        return 130


def entry() -> None:
    """The `lift3d` console command: `main()`, then exit with its code. After Ctrl-C (130) the
    process ends at once: threads of an interrupted Beam runner may wait forever on workers
    that were stopped, and the interpreter would wait for them at exit."""
    code = main()
    if code == 130:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    sys.exit(code)


if __name__ == "__main__":
    # `python -m pipelines.cli` runs this file as __main__: call the imported module's entry so
    # that command modules raise the same UserError class that main() catches
    from pipelines.cli import entry as _entry

    _entry()
