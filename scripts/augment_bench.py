#!/usr/bin/env python
"""Adversarial augmentation benchmark: ``python scripts/augment_bench.py [--seeds 3]``."""

from __future__ import annotations

import argparse
import sys

from facecloak.commands_augment import add_augment_commands


def main() -> int:
    """Parse the ``augment-bench`` arguments and run it."""
    parser = argparse.ArgumentParser(prog="augment_bench")
    sub = parser.add_subparsers(dest="command")
    add_augment_commands(sub)
    args = parser.parse_args(["augment-bench", *sys.argv[1:]])
    return int(args.func(args, None))


if __name__ == "__main__":
    sys.exit(main())
