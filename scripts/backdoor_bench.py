#!/usr/bin/env python
"""Backdoor detection benchmark: ``python scripts/backdoor_bench.py [--split tune|report]``."""

from __future__ import annotations

import argparse
import sys

from facecloak.commands_backdoor import add_backdoor_commands


def main() -> int:
    """Parse the ``backdoor-bench`` arguments and run it."""
    parser = argparse.ArgumentParser(prog="backdoor_bench")
    sub = parser.add_subparsers(dest="command")
    add_backdoor_commands(sub)
    args = parser.parse_args(["backdoor-bench", *sys.argv[1:]])
    return int(args.func(args, None))


if __name__ == "__main__":
    sys.exit(main())
