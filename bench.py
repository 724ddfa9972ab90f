"""Speed and quality figures, each beside its baseline measured in the same run.

    python bench.py                       # trains the defaults afresh in a temporary folder (~5 min)
    python bench.py --checkpoints checkpoints   # reuse trained checkpoints; skips the training timings

Prints figures and ratios against the targets; it never fails on a missed target.
"""
from __future__ import annotations

import argparse
import http.client
import json
import math
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import quote

import torch
import torch.nn.functional as F

from data import ALPHABET, load_dataset, pad_batch
from model import N_TOKENS, Classifier, Generator, build, generator_batch, load_checkpoint
from train import CLASSIFIER, GENERATOR, evaluate_classifier, sample_quality, scores

ROOT = Path(__file__).resolve().parent


def heading(text: str) -> None:
    print(f"\n## {text}")


def verdict(ok: bool) -> str:
    return "meets target" if ok else "MISSES target"


# ----------------------------------------------------------------------------- training speed

def batched_names_per_second(model: torch.nn.Module, loss_of, examples, batch_size: int, seconds: float) -> float:
    """The default trainer's inner loop: padded batches of similar length, Adam."""
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    examples = sorted(examples, key=lambda e: len(e[0]))
    batches = [examples[i:i + batch_size] for i in range(0, len(examples), batch_size)]
    random.Random(0).shuffle(batches)
    done, start = 0, time.perf_counter()
    for batch in batches:
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
    return F.nll_loss(model(*pad_batch([n for n, _ in batch])), torch.tensor([l for _, l in batch]))


def generator_loss(model, batch):
    inputs, targets = generator_batch([n for n, _ in batch])
    return F.nll_loss(model(torch.tensor([l for _, l in batch]), inputs).transpose(1, 2), targets)


def training_speed(dataset) -> None:
    heading("Training throughput: batched trainer against the tutorial's loop (same model)")
    train = dataset.split("train")
    n = len(dataset.languages)
    for label, make, loss_of, settings in [
        ("classifier", lambda: Classifier(len(ALPHABET), n, CLASSIFIER["hidden_size"], CLASSIFIER["cell"],
                                          dropout=CLASSIFIER["dropout"], letter_dropout=CLASSIFIER["letter_dropout"]),
         classifier_loss, CLASSIFIER),
        ("generator", lambda: Generator(N_TOKENS, n, GENERATOR["hidden_size"], GENERATOR["cell"],
                                        GENERATOR["dropout"]), generator_loss, GENERATOR),
    ]:
        torch.manual_seed(0)
        batched = batched_names_per_second(make(), loss_of, train, settings["batch_size"], 8.0)
        torch.manual_seed(0)
        single = tutorial_names_per_second(make(), loss_of, train, 8.0)
        ratio = batched / single
        print(f"{label}: batched {batched:,.0f} names/s, tutorial-style {single:,.0f} names/s, "
              f"ratio {ratio:.1f}x (target >= 25x: {verdict(ratio >= 25)})")


# ----------------------------------------------------------------------------- accuracy

class NaiveBayes:
    """Multinomial naive Bayes over character 1- to 4-grams of the name with its edges marked."""

    def __init__(self, examples, n_labels: int, alpha: float = 0.1):
        self.counts = [Counter() for _ in range(n_labels)]
        for name, label in examples:
            self.counts[label].update(self.grams(name))
        self.totals = [sum(c.values()) for c in self.counts]
        self.vocabulary = len(set().union(*self.counts))
        label_counts = Counter(label for _, label in examples)
        self.priors = [math.log(label_counts[i] / len(examples)) for i in range(n_labels)]
        self.alpha = alpha

    @staticmethod
    def grams(name: str) -> list[str]:
        marked = f"^{name}$"
        return [marked[i:i + n] for n in range(1, 5) for i in range(len(marked) - n + 1)]

    def predict(self, name: str) -> int:
        grams = self.grams(name)
        best = max(range(len(self.counts)), key=lambda i: self.priors[i] + sum(
            math.log((self.counts[i][g] + self.alpha) / (self.totals[i] + self.alpha * self.vocabulary))
            for g in grams))
        return best


def accuracy_against_baseline(dataset, classifier: Classifier) -> dict:
    heading("Classifier on the test split, beside a character 1-4-gram naive Bayes")
    test = dataset.split("test")
    n = len(dataset.languages)
    start = time.perf_counter()
    bayes = NaiveBayes(dataset.split("train"), n)
    fitted = time.perf_counter() - start
    baseline = scores([l for _, l in test], [bayes.predict(name) for name, _ in test], n)
    rnn = evaluate_classifier(classifier, test, n)
    goals = {"accuracy": 0.85, "macro_f1": 0.60, "balanced_accuracy": 0.60}
    print(f"test names: {len(test)}; naive Bayes trained in {fitted:.2f} s")
    print(f"{'metric':<18} {'RNN':>6} {'naive Bayes':>12} {'goal':>6}")
    for key, goal in goals.items():
        print(f"{key:<18} {rnn[key]:>6.3f} {baseline[key]:>12.3f} {goal:>6.2f}  "
              f"{'beats baseline' if rnn[key] > baseline[key] else 'DOES NOT beat baseline'}, {verdict(rnn[key] >= goal)}")
    return rnn


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

    def median_wall(command: list[str], runs: int = 5) -> float:
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            subprocess.run(command, cwd=ROOT, capture_output=True, check=True)
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    torch_only = median_wall([sys.executable, "-c", "import torch"])
    predict_one = median_wall([sys.executable, "predict.py", "--checkpoint", str(checkpoint), "Hinton"])
    ratio = predict_one / torch_only
    print(f"python predict.py Hinton: {predict_one:.2f} s; python -c 'import torch': {torch_only:.2f} s "
          f"(median of 5); ratio {ratio:.2f} (target <= 1.5: {verdict(ratio <= 1.5)})")


# ----------------------------------------------------------------------------- generator

def generator_figures(dataset, classifier: Classifier, generator_checkpoint: dict) -> None:
    heading("Generator")
    nll = generator_checkpoint["metrics"]["test_nll"]
    print(f"held-out NLL on the test split: {nll:.3f} nats/char, first letter given, pooled "
          f"(goal <= 1.70: {verdict(nll <= 1.70)})")
    generator = build(generator_checkpoint)
    real = evaluate_classifier(classifier, dataset.split("test"), len(dataset.languages))["balanced_accuracy"]
    default = generator_checkpoint["temperature"]
    quality = sample_quality(generator, classifier, dataset, default)
    print(f"\n100 samples per language at the default temperature {default:.1f} (no start letters):")
    print(f"{'language':<12} {'ended':>6} {'novel':>6} {'distinct':>8} {'judged as asked':>15}")
    for language, row in quality["languages"].items():
        print(f"{language:<12} {row['ended']:>6.2f} {row['novel']:>6.2f} {row['distinct']:>8.2f} {row['judged']:>15.2f}")
    pooled = quality["pooled"]
    print(f"{'pooled':<12} {pooled['ended']:>6.3f} {pooled['novel']:>6.3f} {pooled['distinct']:>8.3f} {pooled['judged']:>15.3f}")
    print(f"targets: ended >= 0.99 ({verdict(pooled['ended'] >= 0.99)}), novel >= 0.80 ({verdict(pooled['novel'] >= 0.80)}), "
          f"distinct >= 0.95 ({verdict(pooled['distinct'] >= 0.95)}), judged >= classifier's balanced accuracy on "
          f"real test names {real:.3f} ({verdict(pooled['judged'] >= real)})")
    print("\nby temperature (pooled over languages):")
    print(f"{'temperature':>11} {'judged as asked':>15} {'novel':>6} {'distinct':>8} {'ended':>6}")
    for tenths in range(5, 11):
        row = sample_quality(generator, classifier, dataset, tenths / 10)["pooled"]
        print(f"{tenths / 10:>11.1f} {row['judged']:>15.3f} {row['novel']:>6.3f} {row['distinct']:>8.3f} {row['ended']:>6.3f}")


# ----------------------------------------------------------------------------- server

def load_client(base: str, names: list[str], clients: int, seconds: float) -> dict:
    """Keep-alive clients hammering /<name>; run in its own process so it does not share the server's GIL."""
    host, port = base.split("//")[1].split(":")
    latencies, errors, lock = [], [0], threading.Lock()
    stop = time.perf_counter() + seconds

    def client(k: int) -> None:
        rng = random.Random(k)
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        mine, bad = [], 0
        while time.perf_counter() < stop:
            path = "/" + quote(rng.choice(names), safe="")
            start = time.perf_counter()
            try:
                connection.request("GET", path)
                response = connection.getresponse()
                body = response.read()
                if response.status != 200 or b'"result"' not in body:
                    bad += 1
            except OSError:
                bad += 1
                connection.close()
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
    wall = time.perf_counter() - began
    latencies.sort()
    return {"requests": len(latencies), "rate": len(latencies) / wall, "errors": errors[0],
            "p50": latencies[len(latencies) // 2] * 1000, "p99": latencies[int(len(latencies) * 0.99)] * 1000}


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return math.nan


def server_figures(dataset, checkpoints: Path) -> None:
    heading("Server: 16 keep-alive clients (separate process) for 10 s against /<name>, names from the test split")
    server = subprocess.Popen([sys.executable, "server.py", "--port", "0", "--quiet",
                               "--classifier", str(checkpoints / "classifier.pt"),
                               "--generator", str(checkpoints / "generator.pt")],
                              cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        base = server.stdout.readline().split()[2].rstrip("/")
        names = [name for name, _ in dataset.split("test")]
        warm = subprocess.run([sys.executable, __file__, "--load-client", base, "--seconds", "1"],
                              input="\n".join(names), capture_output=True, text=True, check=True)
        before = rss_mib(server.pid)
        result = subprocess.run([sys.executable, __file__, "--load-client", base, "--seconds", "10"],
                                input="\n".join(names), capture_output=True, text=True, check=True)
        after = rss_mib(server.pid)
        figures = json.loads(result.stdout)
        growth = (after - before) / before
        print(f"warm-up: {json.loads(warm.stdout)['requests']} requests")
        print(f"{figures['requests']:,} requests, {figures['rate']:,.0f} requests/s (target >= 800: "
              f"{verdict(figures['rate'] >= 800)}), p50 {figures['p50']:.1f} ms, p99 {figures['p99']:.1f} ms "
              f"(target <= 50: {verdict(figures['p99'] <= 50)}), errors {figures['errors']} "
              f"(target 0: {verdict(figures['errors'] == 0)})")
        print(f"server memory: {before:.0f} MiB before, {after:.0f} MiB after, growth {100 * growth:.1f}% "
              f"(target <= 10%: {verdict(growth <= 0.10)})")
    finally:
        server.terminate()
        server.wait(timeout=10)


# ----------------------------------------------------------------------------- main

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoints", help="folder with classifier.pt and generator.pt to measure "
                        "(default: train both afresh, and time that)")
    parser.add_argument("--load-client", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=10, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load_client:
        names = sys.stdin.read().splitlines()
        print(json.dumps(load_client(args.load_client, names, 16, args.seconds)))
        return 0

    dataset = load_dataset()
    print(f"bench on {torch.get_num_threads()} threads, torch {torch.__version__}")
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
            seconds = classifier_checkpoint["seconds"]
            print(f"classifier training loop: {seconds:.1f} s (target <= 60: {verdict(seconds <= 60)})")
            print(f"generator training loop: {generator_checkpoint['seconds']:.1f} s")
            print(f"whole `python train.py`: {total:.1f} s (target <= 150: {verdict(total <= 150)})")
        classifier = build(classifier_checkpoint)
        accuracy_against_baseline(dataset, classifier)
        generator_figures(dataset, classifier, generator_checkpoint)
        prediction_speed(dataset, checkpoints / "classifier.pt")
        server_figures(dataset, checkpoints)
        training_speed(dataset)
    return 0


if __name__ == "__main__":
    sys.exit(main())
