"""Guess which language a surname comes from.

    python predict.py Hinton                 # the top 3 languages, best first, and whether it is sure
    python predict.py -n 5 Hinton Schmidhuber
    python predict.py --json - < names.txt   # one JSON object per input line
    python predict.py --csv members.csv --column surname > answered.csv
    python predict.py --explain Hinton       # which letters decided it, and known names it is like

Lists of any length stream: names are read, answered and written a chunk at a time, in
flat memory, and the first answers come at once.
"""
from __future__ import annotations

import argparse
import csv
import io
import itertools
import json
import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import BinaryIO

from answers import NearestNames, answers, explanation_lines, explanations, run_script
from data import DEFAULT_TOP, ArgumentParser, DataError, usable_name
from model import CLASSIFIER_PATH, Classifier, add_device_argument, classify, load_model

FIRST_CHUNK, CHUNK = 2048, 65536  # names answered in one batched pass before their lines are written: see chunks


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(description="Guess which language a surname comes from.")
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help="surnames to classify; - reads them from stdin, one per line")
    parser.add_argument("-n", "--top", type=int, help=f"how many languages to show per name (default: {DEFAULT_TOP}; "
                        "1 with --csv)")
    parser.add_argument("--json", action="store_true",
                        help="one JSON object per name and line; \"sure\" is true when the answer can be trusted")
    parser.add_argument("--csv", metavar="FILE", help="read a CSV file (- for stdin) and write it to stdout with "
                        "columns added: language, log_probability, sure, error (and language_2, ... with -n)")
    parser.add_argument("--column", help="with --csv, the column that holds the surnames")
    parser.add_argument("--progress", action="store_true", help="show progress on stderr even when it is not a "
                        "terminal (on a terminal it is always shown)")
    parser.add_argument("--explain", action="store_true", help="also score each letter (how far the top language's "
                        "log-odds fall without it) and list the three most similar training names")
    parser.add_argument("--checkpoint", default=str(CLASSIFIER_PATH), help="classifier checkpoint "
                        "(default: checkpoints/classifier.pt beside this script)")
    add_device_argument(parser)
    args = parser.parse_args(argv)
    if args.top is not None and args.top < 1:
        parser.error("-n must be at least 1")
    if bool(args.csv) != bool(args.column):
        parser.error("--csv and --column go together")
    if args.csv and (args.names or args.json or args.explain):
        parser.error("--csv reads names from its column only, and writes CSV (no names, --json or --explain)")
    if not args.csv and not args.names:
        parser.error("give names, - for stdin, or --csv FILE --column NAME")
    return args


class Progress:
    """Names done, names a second and the share of the input read, on one stderr line rewritten in place: on a
    terminal, or when asked for."""

    def __init__(self, source: BinaryIO | None, wanted: bool):
        """source: the input being read, None where this is no batch run (nothing is shown)."""
        self.source, self.shown = source, source is not None and (wanted or sys.stderr.isatty())
        self.size = os.fstat(source.fileno()).st_size if self.shown and source.seekable() else 0  # a pipe's: unknown
        self.done, self.start = 0, time.perf_counter()

    def update(self, names: int) -> None:
        self.done += names
        if self.shown:
            share = f", {min(self.source.tell() / self.size, 1):.0%} of the input" if self.size else ""
            rate = self.done / max(time.perf_counter() - self.start, 1e-9)
            sys.stderr.write(f"\r{self.done:,} names, {rate:,.0f} names/s{share}")
            sys.stderr.flush()

    def close(self) -> None:
        if self.shown and self.done:
            sys.stderr.write("\n")


def read_names(names: list[str]) -> Iterator[str]:
    """The names to answer, one per argument or stdin line, as valid Unicode whatever bytes arrived. stdin is read as
    bytes, so that one badly encoded line cannot stop the run, and only a line feed (with one carriage return before
    it) ends a line, so that answers line up with the input."""
    for name in names:
        if name == "-":
            for line in sys.stdin.buffer:
                yield line.removesuffix(b"\n").removesuffix(b"\r").decode("utf-8", errors="replace")
        else:  # undecodable bytes in an argument arrive as lone surrogates, which JSON output cannot carry
            yield name.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="replace")


def chunks(items: Iterable, first: int, largest: int) -> Iterator[list]:
    """Lists of items read as they are needed, the first of `first`, each next one twice the last up to `largest`: the
    first answers come at once, and the later chunks are large enough that sorting their names by length saves as
    much padding as sorting the whole list would."""
    iterator, size = iter(items), first
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk
        size = min(2 * size, largest)


def answer_chunk(model: Classifier, checkpoint: dict, names: list[str], top: int,
                 known: NearestNames | None = None) -> list[dict]:
    """One answer per name, in order, from one batched pass over the chunk's distinct names; an {"error"} record
    for a name that has none."""
    records: dict[str, dict] = {}
    normalised: dict[str, str] = {}
    for name in dict.fromkeys(names):
        try:
            normalised[name] = usable_name(name)
        except DataError as error:
            records[name] = {"name": name, "error": str(error)}
    if normalised:
        unique = list(dict.fromkeys(normalised.values()))
        row = {clean: i for i, clean in enumerate(unique)}
        log_probs = classify(model, unique)[[row[clean] for clean in normalised.values()]]  # a row per input
        records.update(zip(normalised, answers(list(normalised), list(normalised.values()), log_probs,
                                               checkpoint["languages"], top, checkpoint["sure_threshold"])))
        if known is not None:
            why = dict(zip(unique, explanations(model, unique, known)))
            for name, clean in normalised.items():
                records[name]["explain"] = why[clean]
    return [records[name] for name in names]


def text_lines(record: dict, explain: bool) -> str:
    lines = [f"({value:.2f}) {language}" for value, language in record["result"]]
    lines[0] += "  (sure)" if record["sure"] else "  (not sure)"
    if explain:
        lines += explanation_lines(record["normalised"], record["result"][0][1], record["explain"])
    return "\n".join(lines) + "\n"


def write_answers(args: argparse.Namespace, model: Classifier, checkpoint: dict) -> int:
    """Text or JSON lines for names from the arguments and stdin, a chunk at a time; exit status 2 if a name in text
    mode had no answer (its error is a line on stderr)."""
    known = NearestNames.of(model, checkpoint) if args.explain else None  # a pass over the training names
    progress = Progress(sys.stdin.buffer if "-" in args.names else None, args.progress)
    names = read_names(args.names)
    first = list(itertools.islice(names, 2))
    headed = len(first) > 1  # several names: each answer under its name
    status = 0
    for chunk in chunks(itertools.chain(first, names), FIRST_CHUNK, CHUNK):
        for name, record in zip(chunk, answer_chunk(model, checkpoint, chunk, args.top or DEFAULT_TOP, known)):
            if args.json:
                sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
            elif "error" in record:
                print(f"error: {record['error']}", file=sys.stderr)
                status = 2
            else:
                sys.stdout.write((f"\n> {name}\n" if headed else "") + text_lines(record, args.explain))
        sys.stdout.flush()  # this chunk's answers reach the reader before the next chunk is read
        progress.update(len(chunk))
    progress.close()
    return status


def csv_rows(source: BinaryIO, label: str) -> Iterator[list[str]]:
    """The rows of a UTF-8 CSV file, with or without a byte-order mark; a malformed one is a DataError."""
    reader = csv.reader(io.TextIOWrapper(source, encoding="utf-8-sig", errors="replace", newline=""))
    try:
        yield from reader
    except csv.Error as error:
        raise DataError(f"{label}, line {reader.line_num}: {error}") from None


def write_csv(args: argparse.Namespace, model: Classifier, checkpoint: dict) -> int:
    """The CSV file as it was, rows in order, with the answer's columns added to each row."""
    label = "stdin" if args.csv == "-" else args.csv
    try:
        source = sys.stdin.buffer if args.csv == "-" else open(args.csv, "rb")
    except OSError as error:
        raise DataError(f"cannot read {label}: {error.strerror}") from None
    with source:
        rows = csv_rows(source, label)
        header = next(rows, None)
        if header is None:
            raise DataError(f"{label} is empty: a CSV file needs a header row")
        if args.column not in header:
            raise DataError(f"{label} has no column {args.column!r}; its columns are {', '.join(header)}")
        at, top = header.index(args.column), args.top or 1
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(header + ["language", "log_probability", "sure", "error"]
                        + [f"{column}_{k}" for k in range(2, top + 1) for column in ("language", "log_probability")])
        progress = Progress(source, args.progress)
        for chunk in chunks(rows, FIRST_CHUNK, CHUNK):
            chunk = [row + [""] * (len(header) - len(row)) for row in chunk]  # a short row's answer still lines up
            for row, record in zip(chunk, answer_chunk(model, checkpoint, [row[at] for row in chunk], top)):
                result = record.get("result", [])
                best = [result[0][1], result[0][0], str(record["sure"]).lower(), ""] if result else \
                    ["", "", "", record["error"]]
                writer.writerow(row + best + [field for value, language in result[1:] for field in (language, value)]
                                + [""] * (2 * (top - max(len(result), 1))))
            sys.stdout.flush()
            progress.update(len(chunk))
        progress.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def body() -> int:
        model, checkpoint = load_model(args.checkpoint, "classifier", args.device)
        return (write_csv if args.csv else write_answers)(args, model, checkpoint)

    return run_script(body)


if __name__ == "__main__":
    sys.exit(main())
