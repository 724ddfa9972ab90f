"""Invent surnames in a chosen language.

    python sample.py Russian RUS     # three names, starting R, U and S
    python sample.py german -n 10    # ten names; the model picks the first letters
"""
from __future__ import annotations

import argparse
import sys

from answers import run_script, sample_request
from data import DEFAULT_SAMPLES, MAX_LENGTH_RANGE, MAX_SAMPLES, TEMPERATURE_RANGE, ArgumentParser
from model import GENERATOR_PATH, invent, load_model


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(description="Invent surnames in a chosen language.")
    parser.add_argument("language", help="language to invent names in, any letter case (e.g. Russian)")
    parser.add_argument("start_letters", nargs="?", default="",
                        help="one name per letter, starting with it "
                        "(default: -n names, first letters chosen by the model)")
    parser.add_argument("-n", type=int, help=f"how many names without start letters, 1 to {MAX_SAMPLES} "
                        f"(default: {DEFAULT_SAMPLES})")
    parser.add_argument("--temperature", type=float, help=f"{TEMPERATURE_RANGE[0]} to {TEMPERATURE_RANGE[1]}; "
                        "lower gives safer, more typical names (default: chosen at training, in the checkpoint)")
    parser.add_argument("--greedy", action="store_true",
                        help="always take the likeliest next letter (the tutorial's decoding)")
    parser.add_argument("--seed", type=int, help="random seed: the same seed gives the same names (default: random)")
    parser.add_argument("--max-length", type=int, default=20,
                        help=f"longest name, in letters, {MAX_LENGTH_RANGE[0]} to {MAX_LENGTH_RANGE[1]} (default: 20)")
    parser.add_argument("--checkpoint", default=str(GENERATOR_PATH), help="generator checkpoint "
                        "(default: checkpoints/generator.pt beside this script)")
    args = parser.parse_args(argv)
    if not MAX_LENGTH_RANGE[0] <= args.max_length <= MAX_LENGTH_RANGE[1]:
        parser.error(f"--max-length must be between {MAX_LENGTH_RANGE[0]} and {MAX_LENGTH_RANGE[1]}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def body() -> int:
        model, checkpoint = load_model(args.checkpoint, "generator")
        request = sample_request(checkpoint["languages"], args.language, args.start_letters, args.n,
                                 args.temperature, checkpoint["temperature"], args.seed)
        names = invent(model, request.language, request.starts, request.temperature, args.greedy,
                       args.max_length, request.seed)
        print("\n".join(names))
        return 0

    return run_script(body)


if __name__ == "__main__":
    sys.exit(main())
