"""Invent surnames in a chosen language.

    python sample.py Russian RUS             # three names, starting R, U and S
    python sample.py german -n 10            # ten names; the model picks the first letters
    python sample.py Russian --prefix iva    # names that begin with Iva
    python sample.py Italian -n 5 --known    # names it trained on may come too (by default only new ones)
    python sample.py Irish --beam 5          # the five likeliest names, with their log-probabilities
"""
from __future__ import annotations

import argparse
import sys

from answers import invented, run_script, sample_request
from data import (DEFAULT_MAX_LENGTH, DEFAULT_SAMPLES, MAX_BEAM, MAX_LENGTH_RANGE, MAX_SAMPLES, TEMPERATURE_RANGE,
                  TOP_K_RANGE, ArgumentParser)
from model import GENERATOR_PATH, add_device_argument, load_model


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(description="Invent surnames in a chosen language.")
    parser.add_argument("language", help="language to invent names in, any letter case (e.g. Russian)")
    parser.add_argument("start_letters", nargs="?", default="",
                        help="one name per letter, starting with it, any case "
                        "(default: -n names, first letters chosen by the model)")
    parser.add_argument("-n", type=int, help=f"how many names without start letters, 1 to {MAX_SAMPLES} "
                        f"(default: {DEFAULT_SAMPLES})")
    parser.add_argument("--prefix", default="", help="every name begins with these letters, any case; the model "
                        "continues from the state they leave (instead of start letters)")
    parser.add_argument("--known", action="store_true", help="allow names the model trained on (the data set's and "
                        "the real surnames'); by default only new names come, fewer (with a note on stderr) if it "
                        "cannot find enough")
    parser.add_argument("--temperature", type=float, help=f"{TEMPERATURE_RANGE[0]} to {TEMPERATURE_RANGE[1]}: "
                        "divides the model's scores before drawing; lower gives safer, more typical names "
                        "(default: chosen at training, in the checkpoint)")
    parser.add_argument("--top-k", type=int, help=f"draw only among the k likeliest next letters, {TOP_K_RANGE[0]} "
                        f"to {TOP_K_RANGE[1]}, 0 among all; applied after --temperature (default: chosen at "
                        "training, in the checkpoint)")
    decoding = parser.add_mutually_exclusive_group()
    decoding.add_argument("--beam", type=int, help=f"instead of drawing, the K likeliest whole names (1 to "
                          f"{MAX_BEAM}), best first, as (log-probability) Name, for each start letter or the prefix")
    decoding.add_argument("--greedy", action="store_true", help="the likeliest whole name, the same as --beam 1 (the "
                          "tutorial takes the likeliest letter each time, which can miss it)")
    parser.add_argument("--seed", type=int, help="random seed: the same seed gives the same names (default: random)")
    parser.add_argument("--max-length", type=int, default=DEFAULT_MAX_LENGTH, help=f"longest name, in letters, "
                        f"{MAX_LENGTH_RANGE[0]} to {MAX_LENGTH_RANGE[1]} (default: {DEFAULT_MAX_LENGTH})")
    parser.add_argument("--checkpoint", default=str(GENERATOR_PATH), help="generator checkpoint "
                        "(default: checkpoints/generator.pt beside this script)")
    add_device_argument(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def body() -> int:
        model, checkpoint = load_model(args.checkpoint, "generator", args.device)
        beam = 1 if args.greedy else args.beam
        request = sample_request(checkpoint, args.language, args.start_letters, args.prefix, args.n,
                                 args.temperature, args.top_k, args.seed, beam, not args.known, args.max_length)
        answer = invented(model, checkpoint, request)
        print("\n".join(f"({name[0]:.2f}) {name[1]}" if request.beam else name for name in answer["names"]))
        if "note" in answer:
            print(f"note: {answer['note']}", file=sys.stderr)
        return 0

    return run_script(body)


if __name__ == "__main__":
    sys.exit(main())
