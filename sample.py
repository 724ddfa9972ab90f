"""Invent surnames in a chosen language.

    python sample.py Russian RUS     # three names, starting R, U and S
    python sample.py german -n 10    # ten names; the model picks the first letters
"""
from __future__ import annotations

import argparse
import sys

from data import ArgumentParser, DataError, find_language, start_letters
from model import GENERATOR_PATH, CheckpointError, build, invent, load_checkpoint

MAX_NAMES = 1000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(description="Invent surnames in a chosen language.")
    parser.add_argument("language", help="language to invent names in, any letter case (e.g. Russian)")
    parser.add_argument("start_letters", nargs="?", default="",
                        help="one name per letter, starting with it (default: -n names, first letters chosen by the model)")
    parser.add_argument("-n", type=int, default=5, help="how many names without start letters (default: 5)")
    parser.add_argument("--temperature", type=float,
                        help="above 0; lower gives safer, more typical names (default: chosen at training, in the checkpoint)")
    parser.add_argument("--greedy", action="store_true", help="always take the likeliest next letter (the tutorial's decoding)")
    parser.add_argument("--seed", type=int, help="random seed: the same seed gives the same names (default: random)")
    parser.add_argument("--max-length", type=int, default=20, help="longest name, in letters (default: 20)")
    parser.add_argument("--checkpoint", default=str(GENERATOR_PATH), help=f"generator checkpoint (default: {GENERATOR_PATH})")
    args = parser.parse_args(argv)
    if not 1 <= args.n <= MAX_NAMES:
        parser.error(f"-n must be between 1 and {MAX_NAMES}")
    if args.temperature is not None and not 0 < args.temperature <= 10:
        parser.error("--temperature must be above 0 and at most 10")
    if not 1 <= args.max_length <= 100:
        parser.error("--max-length must be between 1 and 100")
    if len(args.start_letters) > MAX_NAMES:
        parser.error(f"at most {MAX_NAMES} start letters")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        checkpoint = load_checkpoint(args.checkpoint, "generator")
    except CheckpointError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    try:
        language = find_language(checkpoint["languages"], args.language)
        starts = start_letters(args.start_letters) or [None] * args.n
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    temperature = args.temperature or checkpoint["temperature"]
    names = invent(build(checkpoint), language, starts, temperature, args.greedy, args.max_length, args.seed)
    print("\n".join(names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
