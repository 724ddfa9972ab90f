"""Guess which language a surname comes from.

    python predict.py Hinton                 # top 3, best first: (-0.47) Scottish
    python predict.py -n 5 Hinton Schmidhuber
    python predict.py --json - < names.txt   # one JSON object per input line
    python predict.py --explain Hinton       # which letters decided it, and known names it is like
"""
from __future__ import annotations

import argparse
import json
import sys

from answers import NearestNames, answers, explanation_lines, explanations, run_script
from data import DEFAULT_TOP, ArgumentParser, DataError, usable_name
from model import CLASSIFIER_PATH, add_device_argument, classify, load_model


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(description="Guess which language a surname comes from.")
    parser.add_argument("names", nargs="+", metavar="NAME",
                        help="surnames to classify; - reads them from stdin, one per line")
    parser.add_argument("-n", "--top", type=int, default=DEFAULT_TOP,
                        help=f"how many languages to show per name (default: {DEFAULT_TOP})")
    parser.add_argument("--json", action="store_true",
                        help="one JSON object per name and line; \"sure\" is true when the answer can be trusted")
    parser.add_argument("--explain", action="store_true", help="also score each letter (how far the top language's "
                        "log-odds fall without it) and list the three most similar training names")
    parser.add_argument("--checkpoint", default=str(CLASSIFIER_PATH), help="classifier checkpoint "
                        "(default: checkpoints/classifier.pt beside this script)")
    add_device_argument(parser)
    args = parser.parse_args(argv)
    if args.top < 1:
        parser.error("-n must be at least 1")
    return args


def read_names(args: argparse.Namespace) -> list[str]:
    """The names to answer, one per argument or stdin line, as valid Unicode whatever bytes arrived. Only a line feed
    (with one carriage return before it) ends a line, so that answers line up with the input."""
    names = []
    for name in args.names:
        if name == "-":  # bytes, so that one badly encoded line cannot stop the run
            lines = sys.stdin.buffer.read().split(b"\n")
            if lines[-1] == b"":
                lines.pop()
            names.extend(line.removesuffix(b"\r").decode("utf-8", errors="replace") for line in lines)
        else:  # undecodable bytes in an argument arrive as lone surrogates, which JSON output cannot carry
            names.append(name.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="replace"))
    return names


def answers_for(names: list[str], args: argparse.Namespace) -> dict[str, dict]:
    """One answer per distinct input (name lists repeat names), an {"error"} record where it has none."""
    model, checkpoint = load_model(args.checkpoint, "classifier", args.device)
    records: dict[str, dict] = {}
    normalised: dict[str, str] = {}
    for name in dict.fromkeys(names):
        try:
            normalised[name] = usable_name(name)
        except DataError as error:
            records[name] = {"name": name, "error": str(error)}
    unique = list(dict.fromkeys(normalised.values()))
    if not unique:
        return records
    row = {clean: i for i, clean in enumerate(unique)}
    log_probs = classify(model, unique)[[row[clean] for clean in normalised.values()]]  # a row per input
    records.update(zip(normalised, answers(list(normalised), list(normalised.values()), log_probs,
                                           checkpoint["languages"], args.top, checkpoint["sure_threshold"])))
    if args.explain:  # the index costs a pass over the training names: only when asked
        why = dict(zip(unique, explanations(model, unique, NearestNames.of(model, checkpoint))))
        for name, clean in normalised.items():
            records[name]["explain"] = why[clean]
    return records


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_script(lambda: write_answers(read_names(args), args))


def write_answers(names: list[str], args: argparse.Namespace) -> int:
    records = answers_for(names, args)
    if args.json:
        lines = {name: json.dumps(record, ensure_ascii=False) + "\n" for name, record in records.items()}
        sys.stdout.write("".join(lines[name] for name in names))
        return 0
    status = 0
    for name in names:
        record = records[name]
        if "error" in record:
            print(f"error: {record['error']}", file=sys.stderr)
            status = 2
            continue
        if len(names) > 1:
            sys.stdout.write(f"\n> {name}\n")
        lines = [f"({value:.2f}) {language}" for value, language in record["result"]]
        lines[0] += "  (sure)" if record["sure"] else "  (not sure)"
        if args.explain:
            lines += explanation_lines(record["normalised"], record["result"][0][1], record["explain"])
        sys.stdout.write("\n".join(lines) + "\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
