"""``ecc profiles``: list the shipped hardware profiles, or show one resolved with defaults."""

from __future__ import annotations

import argparse
import sys

from ._common import format_table, write_json

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "profiles",
        help="list hardware profiles or show one",
        description="List the shipped hardware profiles as a table, or print one profile resolved with defaults.",
    )
    parser.add_argument("--show", metavar="NAME|PATH", help="print this profile (a shipped name or a YAML file)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="with --show: override a profile key (dotted, e.g. array.rows=32); repeatable",
    )
    parser.add_argument(
        "--json",
        metavar="PATH|-",
        nargs="?",
        const="-",
        default=None,
        help="also write the profile list (or the shown profile) as JSON to PATH; '-' or no PATH for stdout, "
        "replacing the table (an unlimited bandwidth is null)",
    )
    parser.set_defaults(run=run)


def _buffer_text(profile) -> str:
    b = profile.memory.buffer
    if b.is_shared:
        return f"shared {b.shared_words}"
    return f"{b.ifmap_words}/{b.filter_words}/{b.ofmap_words}"


def run(args: argparse.Namespace) -> int:
    from energysim.spec import dump_profile, load_profile, shipped_profile_names, shipped_profile_path

    if args.show:
        profile = load_profile(args.show, args.overrides)
        if args.json:
            write_json(profile.to_dict() | {"digest": profile.digest}, args.json)
        if args.json != "-":
            sys.stdout.write(dump_profile(profile))
        return 0
    if args.overrides:
        raise ValueError("--set needs --show NAME (overrides apply to one profile)")
    # By path: a file in the working directory named like a shipped profile is no clash here.
    profiles = [load_profile(shipped_profile_path(name)) for name in shipped_profile_names()]
    if args.json:
        write_json([p.to_dict() | {"digest": p.digest} for p in profiles], args.json)
    if args.json != "-":
        rows = [
            [
                p.name,
                f"{p.array.rows}x{p.array.cols}",
                p.array.dataflow,
                _buffer_text(p),
                f"{p.memory.dram.read:g}",
                p.units,
            ]
            for p in profiles
        ]
        print(format_table(["name", "array", "dataflow", "buffer words (if/fil/of)", "DRAM/word", "units"], rows))
    return 0
