"""Train the surname classifier and the surname generator, and save their checkpoints.

    python train.py                      # both models, good defaults, on the best device there is
    python train.py --model classifier --epochs 5
    python train.py --dry-run            # a few seconds, for CI

Ctrl-C stops training early and still saves the best weights seen so far.
"""
from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import random
import signal
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from data import (ALPHABET, DATA_DIR, MAX_NAME_LENGTH, SPLIT_RULE, ArgumentParser, DataError, Dataset, Example,
                  class_weights, classifier_examples, draw_share, generator_examples, in_split, length_batches,
                  load_training_data)
from evaluate import classifier_score, generator_nll, report_classifier, report_generator
from fitting import fit_classifier, fit_generator
from model import (CELLS, CHECKPOINT_DIR, N_TOKENS, Classifier, Generator, add_device_argument, arguments_for,
                   generator_batch, make_checkpoint, save_checkpoint, writable_folder)
from plots import plot_confusion, plot_losses, plot_reliability

# Settings, gathered in one place; the common ones have a command-line flag of the same name. Each setting past the
# tutorials' RNNs is a rung of docs/ladder.md (`python bench.py --ladder`), which says what it buys.
CLASSIFIER = dict(
    epochs=15,
    hidden_size=128,  # of each direction's state
    lr=7e-3,  # Adam's peak rate, decayed by a cosine
    batch_size=256,  # names per step
    cell="gru",  # or "tutorial", the tutorials' linear cell, or "rnn", the same with a tanh
    directions=2,  # 2 reads each name backwards too
    one_case=True,  # read every name in lower case, so that HINTON, hinton and Hinton get one answer
    balance=True,  # weigh each language by the square root of its size, not its size
    dropout=0.5,  # before the output layer
    letter_dropout=0.1,  # share of letters hidden while training
    real_weight=0.3,  # weight in the loss of a real mimesis surname against a data-set name; 0 for none
    count_order=5,  # letter counts mixed in after training see order - 1 letters back; 0 for none
    count_discount=0.6,  # taken from each count and spread as shorter histories predict
    calibrate=True,  # fit temperatures on validation names, so that probabilities are honest
)
GENERATOR = dict(
    epochs=8,
    hidden_size=384,
    lr=4e-3,
    batch_size=128,
    cell="gru",
    start_token=True,  # learn first letters too, so that it can choose them; else they are given, as in the tutorial
    dropout=0.3,  # in the tutorial's second layer
    real_weight=0.15,
    real_share=0.25,  # of the real surnames, drawn afresh each epoch at real_weight / real_share
    count_order=6,
    count_discount=0.6,
    sampling_defaults=True,  # choose the default temperature and top-k on validation names; else 1 and all letters
)
# On a GPU, unless --batch-size is given: batches large enough to keep it busy, at a learning rate to match.
ACCELERATED = {"classifier": dict(batch_size=2048, lr=0.02), "generator": dict(batch_size=256, lr=5e-3)}
FLAGS = {  # the settings a flag changes, for whichever model trains: type, lowest and highest value, what it is
    "epochs": (int, 1, 10_000, "passes over the training names"),
    "hidden_size": (int, 1, 4096, "width of the recurrent state"),
    "lr": (float, 1e-6, 1.0, "Adam's peak learning rate, decayed by a cosine"),
    "batch_size": (int, 1, 65_536, "names per step; on a GPU more, at another rate, unless given"),
    "dropout": (float, 0.0, 0.99, "dropout before the output layer"),
    "real_weight": (float, 0.0, 10.0, "weight of a real mimesis surname against a data-set name, 0 for none"),
    "count_order": (int, 0, 8, "letter counts mixed in after training see n - 1 letters back, 0 for none"),
}
SEED = 1337
DRY_RUN_STEPS = 20  # batches per model with --dry-run
LOG_EVERY = 50  # steps between progress lines


def fit(model: torch.nn.Module, train: list, loss_of, validate, epochs: int, lr: float, batch_size: int,
        rng: random.Random, max_steps: int | None, log=print, extra: list[Example] = (),
        extra_share: float = 1.0) -> dict:
    """The loop both models share: Adam with cosine decay over batches of similar length. loss_of(examples) gives
    (loss, a note for the progress line), validate() (score, validation loss, summary) after each epoch; the best
    epoch's weights are kept. Ctrl-C ends training early, keeping the best so far. Each epoch adds a share of extra."""
    fused = next(model.parameters()).device.type in ("cpu", "cuda")  # one pass over each tensor per step
    optimiser = torch.optim.Adam(model.parameters(), lr=lr, fused=fused)
    per_epoch = len(train) + round(extra_share * len(extra))
    total_steps = min(epochs * math.ceil(per_epoch / batch_size), max_steps or math.inf)
    history = {"train": [], "validation": []}
    best = {"score": -math.inf, "state": None, "epoch": 0}
    step, start, losses = 0, time.time(), []
    try:
        for epoch in range(1, epochs + 1):
            examples = train + draw_share(extra, extra_share, rng)
            for batch in length_batches([len(example[0]) for example in examples], batch_size, rng):
                if step >= total_steps:
                    break
                progress = step / max(total_steps, 1)  # cosine decay to a tenth of the peak rate
                for group in optimiser.param_groups:
                    group["lr"] = lr * (0.1 + 0.45 * (1 + math.cos(math.pi * progress)))
                loss, note = loss_of([examples[i] for i in batch])
                optimiser.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimiser.step()
                step += 1
                losses.append(loss.item())
                if step % LOG_EVERY == 0 or step == total_steps:
                    recent = losses[-LOG_EVERY:]
                    history["train"].append((step, sum(recent) / len(recent)))
                    log(f"{step} {100 * step // total_steps}% ({time.time() - start:.0f} s) "
                        f"{history['train'][-1][1]:.4f}{note}")
            model.eval()
            score, validation_loss, summary = validate()
            model.train()
            history["validation"].append((step, validation_loss))
            log(f"epoch {epoch}: {summary}")
            if score > best["score"]:
                best = {"score": score, "state": {k: v.clone() for k, v in model.state_dict().items()},
                        "epoch": epoch}
            if step >= total_steps:
                break
    except KeyboardInterrupt:
        log(f"interrupted at step {step}: keeping the best weights so far")
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    history.update(steps=step, best_epoch=best["epoch"], seconds=time.time() - start)
    return history


def train_classifier(dataset: Dataset, real: list[tuple[str, int]], settings: dict, device: torch.device, seed: int,
                     max_steps: int | None = None, log=print, model_type: type = Classifier) -> tuple[Classifier, dict]:
    """Train on the train split and the real names' train part, keeping the epoch with the best validation score."""
    n_labels = len(dataset.languages)
    train = classifier_examples(dataset, real, settings["real_weight"])
    validation, real_validation = dataset.split("validation"), in_split(real, "validation")
    model_args = arguments_for(model_type, settings, n_letters=len(ALPHABET), n_languages=n_labels)
    model = model_type(**model_args).to(device)
    weights = (class_weights(train, [label for _, label in dataset.split("train")], n_labels) if settings["balance"]
               else torch.ones(n_labels)).to(device)

    def loss_of(examples: list[Example]):
        names = [name for name, _, _ in examples]
        labels = torch.tensor([label for _, label, _ in examples], device=device)
        example_weights = weights[labels] * torch.tensor([weight for _, _, weight in examples], device=device)
        log_probs = model(*model.encode(names))
        loss = (F.nll_loss(log_probs, labels, reduction="none") * example_weights).sum() / example_weights.sum()
        guess, truth = (dataset.languages[int(i)] for i in (log_probs[0].argmax(), labels[0]))
        return loss, f" {names[0]} / {guess} {'✓' if guess == truth else f'✗ ({truth})'}"

    def validate():
        score, metrics, summary = classifier_score(model, validation, real_validation, n_labels, weights.cpu())
        return score, metrics["weighted_loss"], summary

    history = fit(model.train(), train, loss_of, validate, settings["epochs"], settings["lr"], settings["batch_size"],
                  random.Random(seed), max_steps, log)
    history.update(model_args=model_args, examples=train)
    return model.eval(), history


def train_generator(dataset: Dataset, real: list[tuple[str, int]], settings: dict, device: torch.device, seed: int,
                    max_steps: int | None = None, log=print) -> tuple[Generator, dict]:
    """Teacher-forced training on the train split and a share of real names each epoch, keeping the best validation
    NLL. Without start_token the first letter is given, not learnt, as in the tutorial."""
    train, extra = generator_examples(dataset, real, settings["real_weight"])
    validation = dataset.split("validation")
    model_args = arguments_for(Generator, settings, n_tokens=N_TOKENS, n_languages=len(dataset.languages))
    model = Generator(**model_args).to(device)

    def loss_of(examples: list[Example]):
        inputs, targets = generator_batch([name for name, _, _ in examples], device)
        if not settings["start_token"]:
            targets[:, 0] = -100
        log_probs = model(torch.tensor([language for _, language, _ in examples], device=device), inputs)
        per_letter = F.nll_loss(log_probs.transpose(1, 2), targets, reduction="none")  # (B, T), 0 past the end
        weights = torch.tensor([weight for _, _, weight in examples], device=device)[:, None] * (targets != -100)
        return (per_letter * weights).sum() / weights.sum(), ""

    def validate():
        nll = generator_nll(model, validation)  # with the first letter given, as the tutorial's generator
        return -nll, nll, f"validation NLL {nll:.4f} nats/char"

    history = fit(model.train(), train, loss_of, validate, settings["epochs"], settings["lr"], settings["batch_size"],
                  random.Random(seed), max_steps, log, extra=extra, extra_share=settings["real_share"])
    history.update(model_args=model_args, examples=train + extra)
    return model.eval(), history


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=["all", "classifier", "generator"], default="all",
                        help="which model to train (default: all)")
    for key, (kind, low, high, text) in FLAGS.items():
        parser.add_argument("--" + key.replace("_", "-"), type=kind, help=f"{text}, {low} to {high} (default: "
                            f"classifier {CLASSIFIER[key]}, generator {GENERATOR[key]})")
    parser.add_argument("--cell", choices=list(CELLS), help="recurrent cell: tutorial, the tutorials' linear one, rnn "
                        "the same with a tanh, or gru (default: gru)")
    add_device_argument(parser)
    parser.add_argument("--seed", type=int, default=SEED, help=f"random seed (default: {SEED})")
    parser.add_argument("--data-dir", default=str(DATA_DIR), help="folder of <Language>.txt files "
                        "(default: data/names beside this script)")
    parser.add_argument("--out", default=str(CHECKPOINT_DIR), help="folder for checkpoints and plots "
                        "(default: checkpoints/ beside this script)")
    parser.add_argument("--dry-run", action="store_true", help=f"train {DRY_RUN_STEPS} steps per model, for CI")
    args = parser.parse_args(argv)
    for key, (_, low, high, _) in FLAGS.items():
        if getattr(args, key) is not None and not low <= getattr(args, key) <= high:
            parser.error(f"--{key.replace('_', '-')} must be between {low} and {high}")
    return args


def run(kind: str, dataset: Dataset, real: list[tuple[str, int]], args: argparse.Namespace, log=print) -> None:
    """Train one model, fit what is fitted after training, measure it on held-out names, and save its checkpoint and
    plots."""
    settings, out = dict(CLASSIFIER if kind == "classifier" else GENERATOR), Path(args.out)
    if args.device.type != "cpu" and args.batch_size is None:  # an accelerator takes larger batches
        settings.update(ACCELERATED[kind])
    settings.update({key: getattr(args, key) for key in settings if getattr(args, key, None) is not None})
    log(f"training the {kind} on {args.device}: {settings}")
    torch.manual_seed(args.seed)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic matrix products on CUDA need it
    torch.use_deterministic_algorithms(True, warn_only=True)  # the same seed on the same device, the same model
    trainer = train_classifier if kind == "classifier" else train_generator
    model, history = trainer(dataset, real, settings, args.device, args.seed, DRY_RUN_STEPS if args.dry_run else None,
                             log)
    log(f"{kind} trained in {history['seconds']:.1f} s ({history['steps']} steps, best epoch {history['best_epoch']})")
    counts = settings["count_order"] > 0
    if kind == "classifier":
        calibration = fit_classifier(model, history["examples"], dataset.split("validation"),
                                     in_split(real, "validation"), counts, settings["calibrate"])
        fields, reliability = report_classifier(model, dataset, real, history["examples"], calibration, log)
        plot_confusion(fields["confusion"], dataset.languages, out / "confusion.png")
        plot_reliability(reliability, out / "reliability.png")
    else:
        fields = fit_generator(model, dataset, real, history["examples"], counts, settings["sampling_defaults"], log)
        fields.update(report_generator(model, dataset, fields, args.seed, log))
    settings.update(seed=args.seed, data_dir=str(Path(args.data_dir).resolve()), device=str(args.device),
                    dry_run=args.dry_run)
    save_checkpoint(make_checkpoint(kind, model, history["model_args"], dataset.languages, split_rule=SPLIT_RULE,
                                    seconds=history["seconds"], settings=settings, **fields), out / f"{kind}.pt")
    plot_losses(history, out / f"{kind}_loss.png", f"{kind.capitalize()} loss (NLL)")
    log(f"saved {out / f'{kind}.pt'} and its plots in {out}")


def train_both(dataset: Dataset, real: list[tuple[str, int]], args: argparse.Namespace) -> int:
    """The generator in a second process beside the classifier, one CPU thread each: their small tensors leave a
    second thread mostly idle, so on two cores the pair take about two thirds of the time they take one after the
    other. Ctrl-C stops both, and each keeps the best weights it has seen. Returns the generator's exit code."""
    worker = multiprocessing.get_context("spawn").Process(target=run_apart, args=(args,), name="generator")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    worker.start()

    def stop_both(signum, frame):  # a terminal's Ctrl-C reaches both processes; `kill -INT` only this one
        if worker.is_alive():
            os.kill(worker.pid, signal.SIGINT)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, stop_both)
    try:
        run("classifier", dataset, real, args)
    finally:
        signal.signal(signal.SIGINT, previous)
        worker.join()
        torch.set_num_threads(threads)
    return worker.exitcode


def run_apart(args: argparse.Namespace) -> None:
    """`run` of the generator in a process of its own, on one thread, its lines marked [generator]. The first Ctrl-C
    stops training, keeping the best weights; later ones are ignored, so that they are always saved."""
    def stop_once(signum, frame):
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, stop_once)
    torch.set_num_threads(1)
    try:
        run("generator", *load_training_data(args.data_dir), args,
            log=lambda line: print("\n".join(f"[generator] {part}" for part in str(line).split("\n")), flush=True))
    except DataError as error:
        print(f"[generator] error: {error}", file=sys.stderr)
        sys.exit(1)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        dataset, real = load_training_data(args.data_dir)
        writable_folder(Path(args.out))
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if dataset.skipped:
        print(f"skipped {dataset.skipped:,} lines of {args.data_dir} longer than {MAX_NAME_LENGTH} characters")
    start = time.time()
    try:
        if args.model != "all":
            run(args.model, dataset, real, args)
        elif train_both(dataset, real, args) != 0:
            print("error: the generator's training process failed (see above)", file=sys.stderr)
            return 1
    except DataError as error:  # a checkpoint or plot that cannot be written; the old one is kept
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"done in {time.time() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
