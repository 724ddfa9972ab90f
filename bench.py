"""Speed and quality figures, each beside its baseline measured in the same run.

    python bench.py                       # trains the defaults afresh in a temporary folder (~5 min)
    python bench.py --checkpoints checkpoints   # reuse trained checkpoints; skips the training timings

Prints figures and ratios against the targets; it never fails on a missed target.
"""
from __future__ import annotations

import argparse
import http.client
import itertools
import json
import math
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

import fused
from answers import NearestNames, explanations
from data import in_split, load_dataset, load_real_names
from evaluate import NaiveBayes, evaluate_classifier, report_classifier, sample_quality
from model import Classifier, Generator, build, generator_batch, load_checkpoint, load_model, plain_torch
from server import CACHE_SIZE
from train import (CLASSIFIER, GENERATOR, adam, classifier_args, classifier_decay, generator_args, matmuls,
                   training_examples)

ROOT = Path(__file__).resolve().parent


def heading(text: str) -> None:
    print(f"\n## {text}")


def verdict(ok: bool) -> str:
    return "meets target" if ok else "MISSES target"


def median_wall(command: list[str], runs: int = 5) -> float:
    """Median wall time of a command run from the project folder, start-up included."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, cwd=ROOT, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# ----------------------------------------------------------------------------- training speed

def batched_names_per_second(model: torch.nn.Module, loss_of, examples, settings: dict, seconds: float,
                             weight_decay: dict[str, float]) -> float:
    """The default trainer's inner loop: padded batches of similar length, train.py's Adam and precision.

    The batches go round until the time is up, as the tutorial's loop runs: one pass over the
    training names lasts about a second for the classifier, too short a window on a shared machine.
    """
    batch_size = settings["batch_size"]
    optimiser = adam(model, 3e-3, weight_decay)
    examples = sorted(examples, key=lambda e: len(e[0]))
    batches = [examples[i:i + batch_size] for i in range(0, len(examples), batch_size)]
    random.Random(0).shuffle(batches)
    done, start = 0, time.perf_counter()
    for batch in itertools.cycle(batches):
        with matmuls(settings["precision"]):
            loss = loss_of(model, batch)
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        done += len(batch)
        if time.perf_counter() - start > seconds:
            break
    return done / (time.perf_counter() - start)


def tutorial_names_per_second(model: torch.nn.Module, loss_of, examples, seconds: float) -> float:
    """The tutorial's loop: one random name per step, plain SGD."""
    rng = random.Random(0)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.005)
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        loss = loss_of(model, [rng.choice(examples)])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        done += 1
    return done / (time.perf_counter() - start)


def classifier_loss(model, batch):
    return F.nll_loss(model(*model.encode([n for n, _ in batch])), torch.tensor([label for _, label in batch]))


def generator_loss(model, batch):
    inputs, targets = generator_batch([n for n, _ in batch])
    return F.nll_loss(model(torch.tensor([label for _, label in batch]), inputs).transpose(1, 2), targets)


def training_speed(dataset) -> None:
    heading("Training throughput: batched trainer against the tutorial's loop (same model)")
    print("(the tutorial's loop runs the model as the tutorial writes it, `model.plain_torch`: cells a torch "
          "operation at a time, the n-gram table through a plain lookup; the same one-name loop with this project's "
          "compiled cells and n-gram backward is shown after it)")
    train = dataset.split("train")
    n = len(dataset.languages)
    for label, make, loss_of, settings, decay in [
        ("classifier", lambda: Classifier(**classifier_args(CLASSIFIER, n)), classifier_loss, CLASSIFIER,
         classifier_decay(CLASSIFIER)),
        ("generator", lambda: Generator(**generator_args(GENERATOR, n)), generator_loss, GENERATOR, {}),
    ]:
        torch.manual_seed(0)
        batched = batched_names_per_second(make(), loss_of, train, settings, 8.0, decay)
        torch.manual_seed(0)
        with plain_torch():
            single = tutorial_names_per_second(make(), loss_of, train, 8.0)
        torch.manual_seed(0)
        single_compiled = tutorial_names_per_second(make(), loss_of, train, 8.0)
        ratio, target = batched / single, {"classifier": 50, "generator": 25}[label]
        print(f"{label}: batched {batched:,.0f} names/s, tutorial-style {single:,.0f} names/s, "
              f"ratio {ratio:.1f}x (target >= {target}x: {verdict(ratio >= target)}); "
              f"one name a step, compiled {single_compiled:,.0f} names/s ({batched / single_compiled:.1f}x)")


# ----------------------------------------------------------------------------- accuracy

def accuracy_figures(dataset, classifier: Classifier, checkpoint: dict) -> None:
    """train.py's report on names the classifier never trained on, then each figure beside its target."""
    heading("Classifier on the test split and on held-out real surnames, beside naive Bayes on the same training names")
    real = load_real_names(dataset)
    train = training_examples(dataset, real, checkpoint["settings"]["real_weight"])
    results = report_classifier(classifier, dataset, real, train, checkpoint["sure_threshold"])
    test, out = results["test"], results["real"]
    data_set_only = NaiveBayes(dataset.split("train"), len(dataset.languages)).evaluate(
        in_split(real, "test"), len(dataset.languages))["mean_recall"]
    calibration = checkpoint["calibration"]
    print(f"\ncalibration: temperature {calibration['temperature']:.3f} fitted on {calibration['names']:,} validation "
          f"names, NLL {calibration['nll_before']:.4f} -> {calibration['nll_after']:.4f}; sure from probability "
          f"{checkpoint['sure_threshold']:.3f}")
    if checkpoint.get("counts"):
        counts = checkpoint["counts"]
        print(f"letter counts mixed in at a share of {counts['share']:.2f} (log-likelihoods at temperature "
              f"{counts['temperature']:.3f}, the mixture at {counts['mixture_temperature']:.3f}): validation score "
              f"{counts['score_without']:.4f} -> {counts['score']:.4f}, NLL {counts['nll']:.4f}")
    print(f"\n{'figure':<58} {'value':>7}  target")
    bayes_recall = out["bayes"]["mean_recall"]
    rows = [
        ("test names with one top language in UPPER, lower, as written", test["any_case"], "1.000",
         test["any_case"] == 1),
        ("real names, mean per-language recall", out["mean_recall"], f">= 0.65 and > naive Bayes {bayes_recall:.3f}",
         out["mean_recall"] >= 0.65 and out["mean_recall"] > bayes_recall),
        ("real names, mean per-language recall, naive Bayes on data-set names only", data_set_only, "(reported)",
         None),
        ("real names, micro accuracy", out["accuracy"], f"(naive Bayes {out['bayes']['accuracy']:.3f})", None),
        ("test accuracy", test["accuracy"], ">= 0.817 (goal 0.85)", test["accuracy"] >= 0.817),
        ("test macro-F1", test["macro_f1"], ">= 0.541 (goal 0.60)", test["macro_f1"] >= 0.541),
        ("test balanced accuracy", test["balanced_accuracy"], ">= 0.556 (goal 0.60)",
         test["balanced_accuracy"] >= 0.556),
        ("test top-3 accuracy", test["top3"], "(0.936 before case folding)", None),
        ("real names top-3 accuracy", out["top3"], "", None),
        ("ECE, test", test["ece"], "<= 0.03", test["ece"] <= 0.03),
        ("ECE, real names", out["ece"], "<= 0.10", out["ece"] <= 0.10),
        ("answers marked sure: accuracy, test", test["sure_accuracy"], ">= 0.95", test["sure_accuracy"] >= 0.95),
        ("answers marked sure: coverage, test", test["sure_coverage"], "(reported)", None),
        ("answers marked sure: accuracy, real names", out["sure_accuracy"], ">= 0.85", out["sure_accuracy"] >= 0.85),
        ("answers marked sure: coverage, real names", out["sure_coverage"], "(reported)", None),
    ]
    for label, value, target, ok in rows:
        print(f"{label:<58} {value:>7.3f}  {target}{'' if ok is None else ': ' + verdict(ok)}")


# ----------------------------------------------------------------------------- prediction speed

def prediction_speed(dataset, checkpoint: Path) -> None:
    heading("Prediction speed")
    names = [name for name, _ in dataset.pairs]
    rng = random.Random(0)
    made_up: set[str] = set()
    while len(made_up) < 100_000:  # a real name plus another's ending: distinct, name-like, mostly unseen
        made_up.add(rng.choice(names) + rng.choice(names)[-3:].lower())
    workloads = {
        f"100,000 lines of the data set's names ({len(set(names)):,} distinct, repeated as in real lists)":
            [names[i % len(names)] for i in range(100_000)],
        "100,000 distinct made-up names (no repeats: the worst case)": sorted(made_up),
    }
    for label, lines in workloads.items():
        stdin = ("\n".join(lines) + "\n").encode()
        start = time.perf_counter()
        result = subprocess.run([sys.executable, "predict.py", "--checkpoint", str(checkpoint), "--json", "-"],
                                cwd=ROOT, input=stdin, capture_output=True, check=True)
        wall = time.perf_counter() - start
        assert result.stdout.count(b"\n") == len(lines)
        rate = len(lines) / wall
        print(f"predict.py --json -, {label}: {wall:.2f} s wall including start-up, "
              f"{rate:,.0f} names/s (target >= 50,000: {verdict(rate >= 50_000)})")

    torch_only = median_wall([sys.executable, "-c", "import torch"])
    predict_one = median_wall([sys.executable, "predict.py", "--checkpoint", str(checkpoint), "Hinton"])
    ratio = predict_one / torch_only
    print(f"python predict.py Hinton: {predict_one:.2f} s; python -c 'import torch': {torch_only:.2f} s "
          f"(median of 5); ratio {ratio:.2f} (target <= 1.5: {verdict(ratio <= 1.5)})")


# ----------------------------------------------------------------------------- generator

def generator_figures(dataset, classifier: Classifier, generator_checkpoint: dict) -> None:
    heading("Generator")
    metrics = generator_checkpoint["metrics"]
    print(f"held-out NLL on the test split, pooled, folded names: {metrics['test_nll']:.3f} nats/char with the "
          f"first letter given (target <= 1.60: {verdict(metrics['test_nll'] <= 1.60)}); "
          f"{metrics['test_nll_first_letter_scored']:.3f} with the first letter scored too")
    generator = build(generator_checkpoint)
    casing, lengths, top_k = (generator_checkpoint[key] for key in ("casing", "lengths", "top_k"))
    known = set(generator_checkpoint["known_names"])  # every name it trained on
    balanced = evaluate_classifier(classifier, dataset.split("test"), len(dataset.languages))["balanced_accuracy"]
    default = generator_checkpoint["temperature"]
    quality = sample_quality(generator, classifier, dataset, known, default, casing, lengths, top_k)
    print(f"\n100 samples per language at the default temperature {default:.2f} and top-k {top_k} "
          "(no start letters):")
    print(f"{'language':<12} {'ended':>6} {'novel':>6} {'distinct':>8} {'judged as asked':>15} {'cased':>6}")
    for language, row in [*quality["languages"].items(), ("pooled", quality["pooled"])]:
        shares = f"{row['ended']:>6.3f} {row['novel']:>6.3f} {row['distinct']:>8.3f} {row['judged']:>15.3f}"
        print(f"{language:<12} {shares} {row['cased']:>6.3f}")
    pooled = quality["pooled"]
    print(f"targets: ended >= 0.99 ({verdict(pooled['ended'] >= 0.99)}), "
          f"novel >= 0.80 ({verdict(pooled['novel'] >= 0.80)}), "
          f"distinct >= 0.95 ({verdict(pooled['distinct'] >= 0.95)}), judged >= classifier's balanced accuracy on "
          f"the test split {balanced:.3f} ({verdict(pooled['judged'] >= balanced)}), capitalisation as the data set "
          f"writes the language >= 0.99 ({verdict(pooled['cased'] >= 0.99)})")
    for seed in (7, 8):  # other draws than the one above: shares move by about 0.02 between draws
        again = sample_quality(generator, classifier, dataset, known, default, casing, lengths, top_k, seed=seed)
        print(f"the same with sampling seed {seed}: "
              + ", ".join(f"{key} {value:.3f}" for key, value in again["pooled"].items()))
    print(f"\nby temperature, top-k {top_k} (pooled over languages):")
    print(f"{'temperature':>11} {'judged as asked':>15} {'novel':>6} {'distinct':>8} {'ended':>6} {'cased':>6}")
    for tenths in range(5, 14):
        row = sample_quality(generator, classifier, dataset, known, tenths / 10, casing, lengths, top_k)["pooled"]
        print(f"{tenths / 10:>11.1f} {row['judged']:>15.3f} {row['novel']:>6.3f} {row['distinct']:>8.3f} "
              f"{row['ended']:>6.3f} {row['cased']:>6.3f}")


def explanation_figures(dataset, checkpoint: Path) -> None:
    heading("Explanations (predict.py --explain)")
    classifier, _ = load_model(checkpoint, "classifier")
    start = time.perf_counter()
    known = NearestNames(classifier, dataset)
    built = time.perf_counter() - start
    megabytes = known.states.numel() * known.states.element_size() / 2**20
    names = [name for name, _ in dataset.split("test")][:500]
    start = time.perf_counter()
    explanations(classifier, names, known)
    per_name = (time.perf_counter() - start) / len(names)
    print(f"nearest-name index: {len(known.names):,} training names, built in {built:.2f} s, {megabytes:.1f} MiB")
    print(f"explaining {len(names)} test names in one batch: {1000 * per_name:.2f} ms per name")
    predict = [sys.executable, "predict.py", "--checkpoint", str(checkpoint)]
    plain, explained = median_wall([*predict, "Hinton"]), median_wall([*predict, "--explain", "Hinton"])
    print(f"python predict.py Hinton: {plain:.2f} s; with --explain (builds the index): {explained:.2f} s "
          f"(median of 5)")


# ----------------------------------------------------------------------------- server

def load_client(base: str, paths: list[str], clients: int, seconds: float) -> dict:
    """Keep-alive clients asking for random paths; run in its own process so it does not share the server's GIL."""
    latencies, errors, lock = [], [0], threading.Lock()
    stop = time.perf_counter() + seconds

    def client(k: int) -> None:
        rng = random.Random(k)
        connection = connect(base)
        mine, bad = [], 0
        while time.perf_counter() < stop:
            path = rng.choice(paths)
            start = time.perf_counter()
            try:
                connection.request("GET", path)
                response = connection.getresponse()
                body = response.read()
                if response.status != 200 or not body.startswith(b"{"):
                    bad += 1
            except OSError:
                bad += 1
                connection.close()
                connection = connect(base)
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
    wall = time.perf_counter() - began
    latencies.sort()
    return {"requests": len(latencies), "rate": len(latencies) / wall, "errors": errors[0],
            "p50": latencies[len(latencies) // 2] * 1000, "p99": latencies[int(len(latencies) * 0.99)] * 1000}


def connect(base: str) -> http.client.HTTPConnection:
    """A keep-alive connection to the server at base (`http://host:port`)."""
    host, port = base.split("//")[1].split(":")
    return http.client.HTTPConnection(host, int(port), timeout=10)


def ask_each(base: str, paths: list[str]) -> None:
    """One request for each path, in turn, on one keep-alive connection."""
    connection = connect(base)
    for path in paths:
        connection.request("GET", path)
        connection.getresponse().read()
    connection.close()


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return math.nan


def server_figures(dataset, checkpoints: Path) -> None:
    """The server as shipped (its cache holds every test name after the warm-up), then with no cache."""
    for label, flags in ((f"default cache of {CACHE_SIZE:,} names", []), ("no cache, --cache 0", ["--cache", "0"])):
        heading(f"Server ({label}): 16 keep-alive clients (separate process) for 10 s against /<name>, "
                "names from the test split, then against /api/health")
        server = subprocess.Popen([sys.executable, "server.py", "--port", "0", "--quiet", *flags,
                                   "--classifier", str(checkpoints / "classifier.pt"),
                                   "--generator", str(checkpoints / "generator.pt")],
                                  cwd=ROOT, stdout=subprocess.PIPE, text=True)
        try:
            server_load(dataset, server)
        finally:
            server.terminate()
            server.wait(timeout=10)


def server_load(dataset, server: subprocess.Popen) -> None:
    base = server.stdout.readline().split()[2].rstrip("/")
    names = ["/" + quote(name, safe="") for name, _ in dataset.split("test")]

    def load(paths: list[str], seconds: float) -> dict:
        result = subprocess.run([sys.executable, __file__, "--load-client", base, "--seconds", str(seconds)],
                                input="\n".join(paths), capture_output=True, text=True, check=True)
        return json.loads(result.stdout)

    ask_each(base, names)  # so that the cache holds every one: a second of random picks left a third unasked
    before = rss_mib(server.pid)
    figures = load(names, 10)
    after = rss_mib(server.pid)
    health = load(["/api/health"], 10)
    growth = (after - before) / before
    print(f"warm-up: each of the {len(names):,} names asked once")
    print(f"{figures['requests']:,} requests, {figures['rate']:,.0f} requests/s (target >= 800: "
          f"{verdict(figures['rate'] >= 800)}), p50 {figures['p50']:.1f} ms, p99 {figures['p99']:.1f} ms "
          f"(target <= 50: {verdict(figures['p99'] <= 50)}), errors {figures['errors']} "
          f"(target 0: {verdict(figures['errors'] == 0)})")
    ratio = figures["rate"] / health["rate"]
    print(f"/api/health in the same run: {health['rate']:,.0f} requests/s, p99 {health['p99']:.1f} ms; "
          f"/<name> at {ratio:.2f} of that (target >= 0.5: {verdict(ratio >= 0.5)}; p99 target <= 20 ms: "
          f"{verdict(figures['p99'] <= 20)})")
    print(f"server memory: {before:.0f} MiB before, {after:.0f} MiB after, growth {100 * growth:.1f}% "
          f"(target <= 10%: {verdict(growth <= 0.10)})")


# ----------------------------------------------------------------------------- main

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoints", help="folder with classifier.pt and generator.pt to measure "
                        "(default: train both afresh, and time that)")
    parser.add_argument("--load-client", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=10, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load_client:
        paths = sys.stdin.read().splitlines()
        print(json.dumps(load_client(args.load_client, paths, 16, args.seconds)))
        return 0

    dataset = load_dataset()
    print(f"bench on {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"cells {'compiled (fused.py)' if fused.LIBRARY else 'in plain torch (no C compiler)'}")
    with tempfile.TemporaryDirectory() as scratch:
        if args.checkpoints:
            checkpoints = Path(args.checkpoints)
        else:
            heading("Training wall time of plain `python train.py` (both models)")
            checkpoints = Path(scratch)
            start = time.perf_counter()
            subprocess.run([sys.executable, "train.py", "--out", scratch], cwd=ROOT, check=True,
                           stdout=subprocess.DEVNULL)
            total = time.perf_counter() - start
        classifier_checkpoint = load_checkpoint(checkpoints / "classifier.pt", "classifier")
        generator_checkpoint = load_checkpoint(checkpoints / "generator.pt", "generator")
        if not args.checkpoints:
            print(f"classifier training loop: {classifier_checkpoint['seconds']:.1f} s")
            print(f"generator training loop: {generator_checkpoint['seconds']:.1f} s")
            print(f"whole `python train.py`: {total:.1f} s (target <= 60: {verdict(total <= 60)})")
        classifier = build(classifier_checkpoint)
        accuracy_figures(dataset, classifier, classifier_checkpoint)
        generator_figures(dataset, classifier, generator_checkpoint)
        prediction_speed(dataset, checkpoints / "classifier.pt")
        explanation_figures(dataset, checkpoints / "classifier.pt")
        server_figures(dataset, checkpoints)
        training_speed(dataset)
    return 0


if __name__ == "__main__":
    sys.exit(main())
