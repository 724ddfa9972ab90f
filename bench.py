"""The figures README and docs/results.md quote, each beside its target, from one run.

    python bench.py                              # trains the defaults afresh in a temporary folder and times it
    python bench.py --checkpoints checkpoints    # measures trained checkpoints; skips the training time
    python bench.py --device cuda                # train and answer on a GPU

Prints figures and verdicts; it never fails on a missed target.
"""
from __future__ import annotations

import argparse
import http.client
import json
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import quote

import torch

from answers import NearestNames, explanations
from data import classifier_examples, in_split, load_dataset, load_real_names
from evaluate import evaluate_classifier, realism, report_classifier, request_distinct, sample_quality
from model import add_device_argument, build, load_checkpoint
from server import CACHE_SIZE

ROOT = Path(__file__).resolve().parent


def heading(text: str) -> None:
    print(f"\n## {text}", flush=True)


def check(label: str, value: float, target: str, ok: bool | None = None) -> None:
    verdict = "" if ok is None else (": meets target" if ok else ": MISSES target")
    print(f"{label:<62} {value:>10.3f}  {target}{verdict}")


def size() -> None:
    heading("Size")
    lines = {path.name: len(path.read_text().splitlines()) for path in ROOT.glob("*.py")}
    words = {path.name: len(path.read_text().split()) for path in [ROOT / "README.md", *ROOT.glob("docs/*.md")]}
    check("non-test Python lines (top-level .py files)", sum(lines.values()), "<= 2,800", sum(lines.values()) <= 2800)
    check("train.py lines", lines["train.py"], "<= 300", lines["train.py"] <= 300)
    readme = words.pop("README.md")
    check("README words", readme, "<= 1,500", readme <= 1500)
    check("docs/ words", sum(words.values()), "<= 4,000", sum(words.values()) <= 4000)


def classifier_figures(dataset, classifier, checkpoint: dict) -> None:
    heading("Classifier: the test split and held-out real surnames, the network alone and naive Bayes beside it")
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
    check("test NLL, nats/char, first letter given: network alone", metrics["test_nll_network"], "(reported)")
    check("test NLL, nats/char, first letter given: with the letter counts", metrics["test_nll"], "<= 1.60",
          metrics["test_nll"] <= 1.60)
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
    real = in_split(load_real_names(dataset), "test")
    for label, setting in (("51b1100's default, 1.10 and top-k 12", (1.1, 12)), ("the default", (temperature, top_k))):
        found = realism(generator, dataset, real, known, *setting, lengths, per_language=4000)
        shares = ", ".join(f"{language} {share:.4f}" for language, share in found["languages"].items())
        check(f"realism at {label}", found["mean"], f"({shares})")


def prediction_speed(dataset, checkpoint: Path, device: str) -> None:
    heading(f"predict.py --json - on {device}, 100,000 distinct made-up names, start-up included")
    names = [name for name, _ in dataset.pairs]
    rng = random.Random(0)
    made_up: set[str] = set()
    while len(made_up) < 100_000:  # a real name plus another's ending: distinct, name-like, mostly unseen
        made_up.add(rng.choice(names) + rng.choice(names)[-3:].lower())
    stdin = ("\n".join(sorted(made_up)) + "\n").encode()
    command = [sys.executable, "predict.py", "--checkpoint", str(checkpoint), "--device", device, "--json", "-"]
    start = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, input=stdin, capture_output=True, check=True)
    wall = time.perf_counter() - start
    assert result.stdout.count(b"\n") == len(made_up)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch"], check=True)
    importing = time.perf_counter() - start
    check("names/s", len(made_up) / wall, ">= 10,000", len(made_up) / wall >= 10_000)
    print(f"{wall:.2f} s in all, of which `import torch` alone takes {importing:.2f} s")


def explanation_figures(dataset, checkpoint: Path, device: str) -> None:
    heading("Explanations")
    classifier = build(load_checkpoint(checkpoint, "classifier"), device)
    names = [name for name, _ in dataset.split("test")]
    explained = explanations(classifier, names, NearestNames(classifier, dataset))
    flat = sum(all(abs(score) < 0.05 for _, score in e["letters"]) for e in explained)
    check("test names whose letter scores are all below 0.05", flat, "0", flat == 0)


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoints", help="folder with classifier.pt and generator.pt to measure "
                        "(default: train both afresh, and time that)")
    add_device_argument(parser)
    parser.add_argument("--load-client", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
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
        explanation_figures(dataset, checkpoints / "classifier.pt", device)
        prediction_speed(dataset, checkpoints / "classifier.pt", device)
        server_figures(dataset, checkpoints, device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
