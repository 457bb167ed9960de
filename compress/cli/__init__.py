"""The ``ecc`` command line: one entry point, one module per subcommand.

Only this package prints or exits. Library errors that describe bad input
(``ValueError``, ``TypeError``, ``OSError`` and their subclasses, such as
:class:`energysim.SpecError`) become one line on stderr and exit status 2; set
``ECC_DEBUG=1`` to see the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sys

from . import calibrate, coeffs, merge, plot, profiles, simulate, sweep, train

__all__ = ["build_parser", "main"]

_COMMANDS = (profiles, simulate, coeffs, calibrate, train, sweep, merge, plot)


def build_parser() -> argparse.ArgumentParser:
    """The ``ecc`` parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="ecc",
        description="Energy-constrained DNN compression driven by a systolic-array energy simulator.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in _COMMANDS:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``ecc`` with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print(f"ecc {args.command}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError, ImportError) as exc:
        if os.environ.get("ECC_DEBUG"):
            raise
        from compress.distributed import is_main_process

        if is_main_process():  # under torchrun every rank fails alike; one says so
            lines = str(exc).strip().splitlines() or [type(exc).__name__]
            print(f"ecc {args.command}: error: {lines[0]}", file=sys.stderr)
            for line in lines[1:]:
                print(f"  {line}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
