"""The ``modelzoo`` command.

Each command is one function taking the parsed arguments and returning an
exit code; :func:`build_parser` wires them to subcommands. To add a group, write
an ``_add_<group>_commands(subparsers)`` function and call it from
:func:`build_parser`.

Example:
    $ modelzoo db status
    $ modelzoo db stop
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Callable, Optional, Sequence

from modelzoo.errors import ModelzooError

__all__ = ["build_parser", "main"]

Handler = Callable[[argparse.Namespace], int]


# --------------------------------------------------------------------------- db


def _cmd_db_status(args: argparse.Namespace) -> int:
    from modelzoo import db

    info = db.status()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    width = max(len(k) for k in info)
    for key, value in info.items():
        if isinstance(value, bool):
            value = "yes" if value else "no"
        elif value is None:
            value = "-"
        print(f"{key:<{width}}  {value}")
    return 0


def _cmd_db_start(args: argparse.Namespace) -> int:
    from modelzoo import db

    uri = db.database_uri()
    info = db.status()
    where = f" (pid {info['pid']}, data in {info['data_dir']})" if info["mode"] == "embedded" else ""
    print(f"MongoDB running at {info['uri'] or uri}{where}")
    return 0


def _cmd_db_stop(args: argparse.Namespace) -> int:
    from modelzoo import db

    info = db.status()
    if info["mode"] == "uri":
        print(f"modelzoo uses {info['uri']} (MODELZOO_DATABASE_URI), which it does not manage; nothing stopped.")
        return 0
    if db.stop(timeout=args.timeout):
        print(f"Stopped mongod (pid {info['pid']}, data in {info['data_dir']}).")
    else:
        print(f"No embedded mongod running for {info['data_dir']}.")
    return 0


def _add_db_commands(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    group = subparsers.add_parser(
        "db",
        help="the MongoDB server modelzoo uses",
        description="Inspect, start or stop modelzoo's database. The embedded mongod keeps "
        "running after modelzoo exits; MODELZOO_DATABASE_URI selects a server of your own.",
    )
    group.set_defaults(handler=_group_help(group))
    commands = group.add_subparsers(title="commands", metavar="COMMAND")

    p = commands.add_parser("status", help="where the database is and whether it runs")
    p.add_argument("--json", action="store_true", help="print the status as JSON")
    p.set_defaults(handler=_cmd_db_status)

    p = commands.add_parser("start", help="start the embedded mongod (or check the URI server)")
    p.set_defaults(handler=_cmd_db_start)

    p = commands.add_parser("stop", help="stop the embedded mongod")
    p.add_argument(
        "--timeout", type=float, default=10.0, help="seconds before SIGKILL (default: 10)"
    )
    p.set_defaults(handler=_cmd_db_stop)


# --------------------------------------------------------------------------- wiring


def _group_help(parser: argparse.ArgumentParser) -> Handler:
    """A handler for a bare group (``modelzoo db``): print its usage, exit 2."""

    def handler(args: argparse.Namespace) -> int:
        parser.print_help(sys.stderr)
        return 2

    return handler


def build_parser() -> argparse.ArgumentParser:
    """The ``modelzoo`` argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="modelzoo",
        description="Run trained models over image datasets and keep the predictions with the data.",
    )
    parser.set_defaults(handler=_group_help(parser))
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    _add_db_commands(subparsers)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the ``modelzoo`` command.

    Args:
        argv: the arguments, without the program name (default: ``sys.argv[1:]``).

    Returns:
        The exit code: 0 on success, 1 on a modelzoo error, 2 on a usage error.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(None if argv is None else list(argv))
    except SystemExit as e:  # --help (0) or a usage error (2): argparse printed it
        return e.code if isinstance(e.code, int) else 2
    try:
        return int(args.handler(args))
    except ModelzooError as e:
        # One line; a multi-line message (a mongod log tail) follows it, indented.
        first, *rest = str(e).splitlines() or [type(e).__name__]
        print(f"modelzoo: error: {first}", file=sys.stderr)
        for line in rest:
            print(f"  {line}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("modelzoo: interrupted", file=sys.stderr)
        return 130
