"""Guess which language a surname comes from.

    python predict.py Hinton                 # top 3, best first: (-0.47) Scottish
    python predict.py -n 5 Hinton Schmidhuber
    python predict.py --json - < names.txt   # one JSON object per input line
"""
from __future__ import annotations

import argparse
import json
import sys

from data import ArgumentParser, DataError, usable_name
from model import CLASSIFIER_PATH, CheckpointError, build, classify, load_checkpoint, top_languages


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(description="Guess which language a surname comes from.")
    parser.add_argument("names", nargs="+", metavar="NAME", help="surnames to classify; - reads them from stdin, one per line")
    parser.add_argument("-n", "--top", type=int, default=3, help="how many languages to show per name (default: 3)")
    parser.add_argument("--json", action="store_true", help="write one JSON object per name and line")
    parser.add_argument("--checkpoint", default=str(CLASSIFIER_PATH), help=f"classifier checkpoint (default: {CLASSIFIER_PATH})")
    args = parser.parse_args(argv)
    if args.top < 1:
        parser.error("-n must be at least 1")
    return args


def read_names(args: argparse.Namespace) -> list[str]:
    names = []
    for name in args.names:
        if name == "-":  # bytes, so that one badly encoded line cannot stop the run
            names.extend(sys.stdin.buffer.read().decode("utf-8", errors="replace").splitlines())
        else:
            names.append(name)
    return names


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        checkpoint = load_checkpoint(args.checkpoint, "classifier")
    except CheckpointError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    model, languages = build(checkpoint), checkpoint["languages"]
    names = read_names(args)
    # Name lists repeat names: everything below is done once per distinct input.
    normalised: dict[str, str] = {}
    errors: dict[str, str] = {}
    for name in dict.fromkeys(names):
        try:
            normalised[name] = usable_name(name)
        except DataError as error:
            errors[name] = str(error)
    unique = list(dict.fromkeys(normalised.values()))
    results = dict(zip(unique, top_languages(classify(model, unique), languages, args.top))) if unique else {}

    if args.json:
        answers = {name: json.dumps({"name": name, "error": error}, ensure_ascii=False) + "\n"
                   for name, error in errors.items()}
        answers.update({name: json.dumps({"name": name, "normalised": clean, "result": results[clean]},
                                         ensure_ascii=False) + "\n" for name, clean in normalised.items()})
        sys.stdout.write("".join(answers[name] for name in names))
        return 0
    status = 0
    for name in names:
        if name in errors:
            print(f"error: {errors[name]}", file=sys.stderr)
            status = 2
            continue
        if len(names) > 1:
            sys.stdout.write(f"\n> {name}\n")
        sys.stdout.write("".join(f"({value:.2f}) {language}\n" for value, language in results[normalised[name]]))
    return status


if __name__ == "__main__":
    sys.exit(main())
