#!/usr/bin/env python
"""Backdoor detection benchmark:
``python scripts/backdoor_bench.py [--split tune|report|check] [--task digits|glyphs|all]``."""

from __future__ import annotations

import argparse
import contextlib
import sys

from facecloak.commands_backdoor import add_backdoor_commands


def main() -> int:
    """Parse the ``backdoor-bench`` arguments (plus ``--task``, ``--signals``) and run it."""
    parser = argparse.ArgumentParser(prog="backdoor_bench")
    sub = parser.add_subparsers(dest="command")
    add_backdoor_commands(sub)
    bench = sub.choices["backdoor-bench"]
    with contextlib.suppress(argparse.ArgumentError):  # until the CLI's parser has them
        bench.add_argument(
            "--task", choices=["digits", "glyphs", "all"], default="all", help="model zoo task"
        )
    with contextlib.suppress(argparse.ArgumentError):
        bench.add_argument(
            "--signals", default=None, help="also save every model's raw signals (torch.save)"
        )
    args = parser.parse_args(["backdoor-bench", *sys.argv[1:]])
    return int(args.func(args, None))


if __name__ == "__main__":
    sys.exit(main())
