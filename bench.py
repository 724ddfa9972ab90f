"""The figures README and docs/results.md quote, each beside its target, from one run.

    python bench.py                              # trains the defaults afresh in a temporary folder and times it
    python bench.py --checkpoints checkpoints    # measures trained checkpoints; skips the training time
    python bench.py --device cuda                # train and answer on a GPU
    python bench.py --ladder                     # every rung from the tutorials' RNNs up: docs/ladder.md

Prints figures and verdicts; it never fails on a missed target.
"""
from __future__ import annotations

import argparse
import http.client
import inspect
import json
import multiprocessing
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import quote

import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence

from data import classifier_examples, in_split, load_dataset, load_real_names, load_training_data
from evaluate import (case_agreement, evaluate_classifier, expected_realism, generator_nll,
                      report_classifier, request_distinct, sample_quality, selection_score)
from fitting import fit_classifier, fit_generator
from model import Classifier, add_device_argument, build, classify, load_checkpoint
from server import CACHE_SIZE
from train import CLASSIFIER, GENERATOR, train_classifier, train_generator

ROOT = Path(__file__).resolve().parent


def heading(text: str) -> None:
    print(f"\n## {text}", flush=True)


def check(label: str, value: float, target: str, ok: bool | None = None) -> None:
    verdict = "" if ok is None else (": meets target" if ok else ": MISSES target")
    print(f"{label:<62} {value:>10.3f}  {target}{verdict}")


def size() -> None:
    heading("Size")
    lines = {path.name: len(path.read_text().splitlines()) for path in ROOT.glob("*.py")}
    words = {path.name: len(path.read_text().split()) for path in [ROOT / "README.md", *ROOT.glob("docs/*.md")]
             if path.name != "ladder.md"}  # which the ladder writes
    check("non-test Python lines (top-level .py files)", sum(lines.values()), "<= 2,950", sum(lines.values()) <= 2950)
    check("train.py lines", lines["train.py"], "<= 300", lines["train.py"] <= 300)
    readme = words.pop("README.md")
    check("README words", readme, "<= 1,500", readme <= 1500)
    check("docs/ words", sum(words.values()), "<= 4,000", sum(words.values()) <= 4000)


def classifier_figures(dataset, classifier, checkpoint: dict) -> None:
    heading("Classifier: the test split and held-out real surnames, naive Bayes beside it")
    real = load_real_names(dataset)
    train = classifier_examples(dataset, real, checkpoint["settings"]["real_weight"])
    results = report_classifier(classifier, dataset, real, train, checkpoint["calibration"])[0]["metrics"]
    test, out = results["test"]["classifier"], results["real"]["classifier"]
    bayes = results["real"]["naive Bayes"]["mean_recall"]
    print()
    check("test accuracy", test["accuracy"], ">= 0.810", test["accuracy"] >= 0.810)
    check("test macro-F1", test["macro_f1"], ">= 0.556", test["macro_f1"] >= 0.556)
    check("test balanced accuracy", test["balanced_accuracy"], ">= 0.590", test["balanced_accuracy"] >= 0.590)
    check("real names, mean per-language recall", out["mean_recall"], f">= 0.720 and > naive Bayes {bayes:.3f}",
          out["mean_recall"] >= 0.72 and out["mean_recall"] > bayes)
    check("ECE, test", test["ece"], "<= 0.03", test["ece"] <= 0.03)
    check("ECE, real names", out["ece"], "<= 0.10", out["ece"] <= 0.10)
    check("answers marked sure: right, test", test["sure_accuracy"], ">= 0.95", test["sure_accuracy"] >= 0.95)
    check("answers marked sure: right, real names", out["sure_accuracy"], ">= 0.85", out["sure_accuracy"] >= 0.85)
    check("test names with one top language in UPPER, lower, as written", test["any_case"], "1.000",
          test["any_case"] == 1)


def generator_figures(dataset, classifier, checkpoint: dict) -> None:
    heading("Generator")
    metrics = checkpoint["metrics"]
    check("test NLL, nats/char, first letter given", metrics["test_nll"], "<= 1.60", metrics["test_nll"] <= 1.60)
    generator = build(checkpoint)
    casing, lengths, top_k, temperature = (checkpoint[key] for key in ("casing", "lengths", "top_k", "temperature"))
    known = set(checkpoint["known_names"])
    balanced = evaluate_classifier(classifier, dataset.split("test"), len(dataset.languages))["balanced_accuracy"]
    quality = sample_quality(generator, dataset, known, temperature, casing, lengths, top_k, classifier)
    print(f"\n100 free samples per language at the default temperature {temperature:.2f}, top-k {top_k}:")
    print(f"{'language':<12} {'ended':>6} {'novel':>6} {'distinct':>8} {'cased':>6} {'judged':>6}")
    for language, row in [*quality["languages"].items(), ("pooled", quality["pooled"])]:
        print(f"{language:<12} {row['ended']:>6.3f} {row['novel']:>6.3f} {row['distinct']:>8.3f} "
              f"{row['cased']:>6.3f} {row['judged']:>6.3f}")
    pooled = quality["pooled"]
    check("free draws: novel (reported; requests keep only new names)", pooled["novel"], "(reported)")
    check("draws per distinct new name", 1 / pooled["new"], "<= 3", 1 / pooled["new"] <= 3)
    within = request_distinct(generator, dataset, known, temperature, top_k, lengths, seed=11)
    check("a request of 100 new names: share that comes back, distinct", within, ">= 0.95", within >= 0.95)
    check("judged as the asked language", pooled["judged"], f">= the test balanced accuracy {balanced:.3f}",
          pooled["judged"] >= balanced)
    found = expected_realism(generator, dataset, in_split(load_real_names(dataset), "test"), lengths,
                             [(temperature, top_k)], [quality])[0]
    check("realism at the defaults, exact (the test part)", found, f"({found:.4f})")


def made_up_names(dataset, count: int) -> list[str]:
    """count distinct name-like strings, mostly unseen: a real name plus another's ending."""
    names = [name for name, _ in dataset.pairs]
    rng = random.Random(0)
    made_up: set[str] = set()
    while len(made_up) < count:
        made_up.add(rng.choice(names) + rng.choice(names)[-3:].lower())
    return sorted(made_up)


def peak_memory(command: list[str], stdin: Path) -> float:
    """The peak resident memory of a command, in MB, from a process that runs nothing else."""
    probe = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, check=True); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    with stdin.open("rb") as names:
        output = subprocess.run([sys.executable, "-c", probe, *command], cwd=ROOT, stdin=names, capture_output=True,
                                check=True)
    return int(output.stdout) / 1024


def name_list_figures(dataset, checkpoint: Path, device: str) -> None:
    heading(f"predict.py on a list of 1,000,000 distinct made-up names on {device}, start-up included")
    names = made_up_names(dataset, 1_000_000)
    command = [sys.executable, "predict.py", "--checkpoint", str(checkpoint), "--device", device]
    with tempfile.TemporaryDirectory() as folder:
        lines, table, small = (Path(folder) / name for name in ("names.txt", "names.csv", "small.txt"))
        lines.write_text("\n".join(names) + "\n")
        small.write_text("\n".join(names[:10_000]) + "\n")
        table.write_text("id,surname\n" + "".join(f"{i},{name}\n" for i, name in enumerate(names)))
        rates = {}
        for label, flags in (("--json -", ["--json", "-"]), ("--csv", ["--csv", str(table), "--column", "surname"])):
            with lines.open("rb") as stdin:
                start = time.perf_counter()
                process = subprocess.Popen(command + flags, cwd=ROOT, stdin=stdin, stdout=subprocess.PIPE)
                process.stdout.readline()
                first = time.perf_counter() - start
                rows = 1 + sum(1 for _ in process.stdout)
                process.wait()
            rates[label] = len(names) / (time.perf_counter() - start)
            check(f"{label}: names/s ({rows:,} lines out)", rates[label], "(reported)")
            check(f"{label}: seconds to the first output line", first, "< 5", first < 5)
        model = build(load_checkpoint(checkpoint, "classifier"), device)
        start = time.perf_counter()
        classify(model, names)
        alone = len(names) / (time.perf_counter() - start)
        check("--json - names/s over the network's alone, one call in one process", rates["--json -"] / alone,
              "(reported)")
        low, high = (peak_memory(command + ["--json", "-"], path) for path in (small, lines))
        print(f"peak memory, --json -: {low:.0f} MB for 10,000 names, {high:.0f} MB for 1,000,000")
        check("peak memory, 1,000,000 names over 10,000", high / low, "<= 1.3", high / low <= 1.3)


def load_client(base: str, paths: list[str], clients: int, seconds: float) -> dict:
    """Keep-alive clients asking for random paths; run in its own process so it does not share the server's GIL."""
    latencies, errors, lock = [], [0], threading.Lock()
    stop = time.perf_counter() + seconds
    host, port = base.split("//")[1].split(":")

    def client(k: int) -> None:
        rng, mine, bad = random.Random(k), [], 0
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        while time.perf_counter() < stop:
            start = time.perf_counter()
            try:
                connection.request("GET", rng.choice(paths))
                response = connection.getresponse()
                bad += response.status != 200 or not response.read().startswith(b"{")
            except OSError:
                bad += 1
                connection = http.client.HTTPConnection(host, int(port), timeout=10)
            mine.append(time.perf_counter() - start)
        with lock:
            latencies.extend(mine)
            errors[0] += bad

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    latencies.sort()
    return {"rate": len(latencies) / (time.perf_counter() - began), "errors": errors[0],
            "p99": latencies[int(len(latencies) * 0.99)] * 1000}


def server_figures(dataset, checkpoints: Path, device: str) -> None:
    heading(f"Server on {device}: 16 keep-alive clients (another process) for 10 s, test names, then /api/health")
    server = subprocess.Popen([sys.executable, "server.py", "--port", "0", "--quiet", "--device", device,
                               "--classifier", str(checkpoints / "classifier.pt"),
                               "--generator", str(checkpoints / "generator.pt")],
                              cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        base = server.stdout.readline().split()[2].rstrip("/")
        paths = ["/" + quote(name, safe="") for name, _ in dataset.split("test")]

        def load(paths: list[str]) -> dict:
            result = subprocess.run([sys.executable, __file__, "--load-client", base], input="\n".join(paths),
                                    capture_output=True, text=True, check=True)
            return json.loads(result.stdout)

        load(paths[:CACHE_SIZE])  # a warm-up that asks every test name: the cache as a running service has it
        names, health = load(paths), load(["/api/health"])
        ratio = names["rate"] / health["rate"]
        print(f"/<name>: {names['rate']:,.0f} requests/s, p99 {names['p99']:.1f} ms, errors {names['errors']}; "
              f"/api/health: {health['rate']:,.0f} requests/s")
        check("cached /<name> against /api/health", ratio, ">= 0.5", ratio >= 0.5)
        check("p99 of /<name>, ms", names["p99"], "<= 20", names["p99"] <= 20)
    finally:
        server.terminate()
        server.wait(timeout=10)


# ----------------------------------------------------------------------------- the ladder
# From the tutorials' RNNs to the shipped models, one change a rung: (what the rung adds, the settings it changes from
# the rung above, the validation figure it exists for). The last rung of each is train.py's defaults.
TUTORIAL_CLASSIFIER = dict(cell="tutorial", directions=1, one_case=False, balance=False, dropout=0.0,
                           letter_dropout=0.0, real_weight=0.0, count_order=0, calibrate=False)
CLASSIFIER_RUNGS = [
    ("the tutorial's RNN, batched", TUTORIAL_CLASSIFIER, "accuracy"),
    ("GRU cell", dict(cell="gru"), "accuracy"),
    ("both directions", dict(directions=2), "accuracy"),
    ("one letter case", dict(one_case=True), "any_case"),
    ("language weights", dict(balance=True), "balanced"),
    ("dropout and hidden letters", dict(dropout=0.5, letter_dropout=0.1), "score"),
    ("real surnames from mimesis", dict(real_weight=0.3), "real"),
    ("letter counts", dict(count_order=5), "score"),
    ("calibration", dict(calibrate=True), "ece"),
]
CLASSIFIER_BESIDE = [  # one change from a rung, off the main line: (what, the rung it changes, settings, figure)
    ("tanh around the tutorial's cell", 0, dict(cell="rnn"), "accuracy"),
    ("`nn.GRU` for the hand-built GRU cells", 8, dict(torch_gru=True), "seconds"),
]
GENERATOR_RUNGS = [
    ("the tutorial's generator, batched (first letter given)", dict(cell="tutorial", start_token=False, real_weight=0.0,
                                                                    count_order=0, sampling_defaults=False), "nll"),
    ("GRU cell", dict(cell="gru"), "nll"),
    ("start token: it chooses first letters", dict(start_token=True), "realism"),
    ("real surnames from mimesis", dict(real_weight=0.15), "realism"),
    ("letter counts", dict(count_order=6), "nll"),
    ("sampling defaults", dict(sampling_defaults=True), "realism"),
]
LOWER_IS_BETTER = {"ece", "real_ece", "nll", "seconds"}
COLUMNS = {  # per model and split: (figure, heading)
    "classifier": [("accuracy", "accuracy"), ("macro_f1", "macro-F1"), ("balanced", "balanced"),
                   ("real", "real recall"), ("ece", "ECE"), ("real_ece", "real ECE"), ("any_case", "any case"),
                   ("score", "score")],
    "generator": [("nll", "NLL"), ("realism", "realism"), ("new", "new draws")],
}
SPLITS = ("validation", "test")
TABLES = "<!-- The tables below, up to Removed, are written by `python bench.py --ladder`. -->"
WORKER: dict = {}


class TorchGRUClassifier(Classifier):
    """The classifier with one bidirectional `nn.GRU` in place of its hand-built cells: the same maths (the tests
    compare the cells), fed one-hot letters, a hidden letter all zeros; for the ladder's speed row."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        del self.i2h, self.cells
        self.gru = torch.nn.GRU(self.n_letters, self.hidden_size, batch_first=True, bidirectional=True)

    __signature__ = inspect.signature(Classifier)  # the settings train.py passes on are the classifier's

    def state(self, letters: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if self.training and self.letter_dropout:
            letters = letters.masked_fill(torch.rand(letters.shape, device=letters.device) < self.letter_dropout,
                                          self.n_letters)
        one_hot = F.one_hot(letters, self.n_letters + 1)[..., :self.n_letters].float()
        packed = pack_padded_sequence(one_hot, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
        return torch.cat(tuple(self.gru(packed)[1]), dim=1)


def start_worker(steps: int | None) -> None:
    torch.set_num_threads(1)
    WORKER.update(data=load_training_data(), steps=steps)


def rung_job(kind: str, settings: dict, seed: int) -> dict:
    """Train one row's network with seed on one thread, fit what is fitted after training, and measure it:
    {"validation": figures, "test": figures, "seconds": training seconds}."""
    dataset, real = WORKER["data"]
    device, counts = torch.device("cpu"), settings["count_order"] > 0
    torch.manual_seed(seed)
    if kind == "classifier":
        model_type = TorchGRUClassifier if settings.get("torch_gru") else Classifier
        model, history = train_classifier(dataset, real, settings, device, seed, WORKER["steps"], str, model_type)
        fit_classifier(model, history["examples"], dataset.split("validation"), in_split(real, "validation"), counts,
                       settings["calibrate"])
        figures = {split: classifier_rung_figures(model, dataset, real, split) for split in SPLITS}
    else:
        model, history = train_generator(dataset, real, settings, device, seed, WORKER["steps"], str)
        fitted = fit_generator(model, dataset, real, history["examples"], counts, settings["sampling_defaults"], str)
        figures = {split: generator_rung_figures(model, dataset, real, fitted, split) for split in SPLITS}
    return {**figures, "seconds": history["seconds"]}


def classifier_rung_figures(model: Classifier, dataset, real: list, split: str) -> dict:
    n_labels = len(dataset.languages)
    names = dataset.split(split)
    data_set = evaluate_classifier(model, names, n_labels)
    reals = evaluate_classifier(model, in_split(real, split), n_labels)
    return {"accuracy": data_set["accuracy"], "macro_f1": data_set["macro_f1"],
            "balanced": data_set["balanced_accuracy"], "real": reals["mean_recall"], "ece": data_set["ece"],
            "real_ece": reals["ece"], "any_case": case_agreement(model, [name for name, _ in names]),
            "score": selection_score(data_set, reals["mean_recall"])}


def generator_rung_figures(model, dataset, real: list, fitted: dict, split: str) -> dict:
    temperature, top_k, casing, lengths = (fitted[key] for key in ("temperature", "top_k", "casing", "lengths"))
    known = set(fitted["known_names"])
    quality = sample_quality(model, dataset, known, temperature, casing, lengths, top_k)
    found = expected_realism(model, dataset, in_split(real, split), lengths, [(temperature, top_k)], [quality])[0]
    return {"nll": generator_nll(model, dataset.split(split)), "realism": found, "new": quality["pooled"]["new"]}


def ladder_rows(kind: str) -> list[tuple[str, int | None, dict, str]]:
    """(what, the rung it builds on, its whole settings, the figure it is for): the main line, then the rows beside."""
    settings = dict(CLASSIFIER if kind == "classifier" else GENERATOR)
    rows = []
    for index, (what, changes, figure) in enumerate(CLASSIFIER_RUNGS if kind == "classifier" else GENERATOR_RUNGS):
        settings = {**settings, **changes}
        rows.append((what, index - 1 if index else None, settings, figure))
    assert settings == (CLASSIFIER if kind == "classifier" else GENERATOR), "the last rung must be train.py's defaults"
    for what, base, changes, figure in CLASSIFIER_BESIDE if kind == "classifier" else []:
        rows.append((what, base, {**rows[base][2], **changes}, figure))
    return rows


def run_ladder(seeds: list[int], steps: int | None) -> dict[str, list[list[dict]]]:
    """Every row's figures for every seed, two rows at a time in processes of one thread each."""
    rows = {kind: ladder_rows(kind) for kind in ("classifier", "generator")}
    figures = {kind: [[{} for _ in seeds] for _ in kind_rows] for kind, kind_rows in rows.items()}
    with multiprocessing.get_context("spawn").Pool(2, initializer=start_worker, initargs=(steps,)) as pool:
        pending = [(kind, row, seed, pool.apply_async(rung_job, (kind, settings, seed)))
                   for kind, kind_rows in rows.items() for row, (_, _, settings, _) in enumerate(kind_rows)
                   for seed in seeds]
        for kind, row, seed, result in pending:
            measured = figures[kind][row][seeds.index(seed)] = result.get()
            print(f"{kind} row {row} ({rows[kind][row][0]}), seed {seed}: {measured}", flush=True)
    return figures


def mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def verdict(rows: list, figures: list[list[dict]], row: int) -> str:
    """Whether a row moves its figure on validation by more than the spread of its seeds and its base's."""
    base, figure = rows[row][1], rows[row][3]
    if base is None:
        return "rung 0"
    (mine, mine_sd), (theirs, theirs_sd) = (mean_sd([seed["seconds"] if figure == "seconds" else
                                                     seed["validation"][figure] for seed in figures[k]])
                                            for k in (row, base))
    change = (theirs - mine) if figure in LOWER_IS_BETTER else (mine - theirs)
    beyond = change > max(mine_sd, theirs_sd)
    if figure == "seconds":
        return f"{'faster' if beyond else 'no faster'} ({mine - theirs:+.0f} s)"
    return f"{'pays' if beyond else 'within the spread'} ({change:+.{4 if figure == 'realism' else 3}f})"


def ladder_table(kind: str, rows: list, figures: list[list[dict]], split: str) -> list[str]:
    columns = COLUMNS[kind]
    lines = ["| row | adds | " + " | ".join(heading for _, heading in columns) + " | seconds |"
             + (" verdict |" if split == "validation" else ""),
             "| --- " * (len(columns) + 3 + (split == "validation")) + "|"]
    for index, (what, base, _, figure) in enumerate(rows):
        label = str(index) if index < len(rows) - len(CLASSIFIER_BESIDE if kind == "classifier" else []) \
            else f"beside {base}"
        cells = []
        for key, _ in columns:
            mean, sd = mean_sd([seed[split][key] for seed in figures[index]])
            digits = 4 if key == "realism" else 3  # realism is a share of about 1%
            cell = f"{mean:.{digits}f} ± {sd:.{digits}f}"
            cells.append(f"**{cell}**" if key == figure and split == "validation" else cell)
        seconds = mean_sd([seed["seconds"] for seed in figures[index]])
        lines.append(f"| {label} | {what} | " + " | ".join(cells) + f" | {seconds[0]:.0f} ± {seconds[1]:.0f} |"
                     + (f" {verdict(rows, figures, index)} |" if split == "validation" else ""))
    return lines


def write_ladder(figures: dict, seeds: list[int], path: Path, command: str) -> None:
    """The tables of docs/ladder.md, between TABLES and its "## Removed" section: the text around them is written by
    hand and kept (the removed rows' code is gone, so no run can write them again)."""
    old = path.read_text() if path.exists() else "# The ladder\n\n"
    machine = f"{os.cpu_count()} CPU cores, torch {torch.__version__}, {time.strftime('%Y-%m-%d')}"
    lines = [TABLES, f"Written by `{command}` on {machine}, seeds {', '.join(map(str, seeds))}.", ""]
    for kind in ("classifier", "generator"):
        rows = ladder_rows(kind)
        for split in SPLITS:
            lines += [f"## {kind.capitalize()}: {split} names", "", *ladder_table(kind, rows, figures[kind], split), ""]
    removed = old[old.index("## Removed"):] if "## Removed" in old else ""
    path.write_text(old.split(TABLES)[0] + "\n".join(lines) + ("\n" + removed if removed else ""))
    print(f"wrote {path}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoints", help="folder with classifier.pt and generator.pt to measure "
                        "(default: train both afresh, and time that)")
    add_device_argument(parser)
    parser.add_argument("--ladder", nargs="?", const="docs/ladder.md", metavar="FILE", help="train every rung of the "
                        "ladder instead (about half an hour on 2 cores) and write its tables to FILE (docs/ladder.md)")
    parser.add_argument("--seeds", default="1337,1,2", help="the ladder's seeds (default: 1337,1,2)")
    parser.add_argument("--steps", type=int, help="the ladder's training steps per row: a quick check, not figures")
    parser.add_argument("--load-client", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ladder:
        seeds = [int(seed) for seed in args.seeds.split(",")]
        write_ladder(run_ladder(seeds, args.steps), seeds, ROOT / args.ladder, "python " + " ".join(sys.argv))
        return 0
    if args.load_client:
        print(json.dumps(load_client(args.load_client, sys.stdin.read().splitlines(), 16, 10.0)))
        return 0
    device = str(args.device)
    print(f"bench on {device}, {torch.get_num_threads()} CPU threads, torch {torch.__version__}")
    dataset = load_dataset()
    size()
    with tempfile.TemporaryDirectory() as scratch:
        checkpoints = Path(args.checkpoints or scratch)
        if not args.checkpoints:
            heading(f"python train.py --device {device}, start-up included")
            start = time.perf_counter()
            subprocess.run([sys.executable, "train.py", "--device", device, "--out", scratch], cwd=ROOT, check=True,
                           stdout=subprocess.DEVNULL)
            seconds = time.perf_counter() - start
            check("seconds", seconds, "<= 120 on 2 CPU cores, <= 30 on one GPU")
        classifier_checkpoint = load_checkpoint(checkpoints / "classifier.pt", "classifier")
        classifier = build(classifier_checkpoint)
        classifier_figures(dataset, classifier, classifier_checkpoint)
        generator_figures(dataset, classifier, load_checkpoint(checkpoints / "generator.pt", "generator"))
        name_list_figures(dataset, checkpoints / "classifier.pt", device)
        server_figures(dataset, checkpoints, device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
