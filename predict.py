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
    normalised: list[str | None] = []
    errors: list[str | None] = []
    for name in names:
        try:
            normalised.append(usable_name(name))
            errors.append(None)
        except DataError as error:
            normalised.append(None)
            errors.append(str(error))
    unique = list(dict.fromkeys(n for n in normalised if n is not None))  # lists repeat names: classify each once
    results = dict(zip(unique, top_languages(classify(model, unique), languages, args.top))) if unique else {}

    status = 0
    out = sys.stdout
    if args.json:
        # each distinct result is encoded once; a line only adds its own name
        encoded = {name: json.dumps(result) for name, result in results.items()}
        for name, clean, error in zip(names, normalised, errors):
            if error:
                out.write(json.dumps({"name": name, "error": error}, ensure_ascii=False) + "\n")
            else:
                out.write(f'{{"name": {json.dumps(name, ensure_ascii=False)}, "normalised": {json.dumps(clean)}, '
                          f'"result": {encoded[clean]}}}\n')
        return status
    for name, clean, error in zip(names, normalised, errors):
        if error:
            print(f"error: {error}", file=sys.stderr)
            status = 2
            continue
        if len(names) > 1:
            out.write(f"\n> {name}\n")
        out.write("".join(f"({value:.2f}) {language}\n" for value, language in results[clean]))
    return status


if __name__ == "__main__":
    sys.exit(main())
