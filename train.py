"""Train the surname classifier and the surname generator, and save their checkpoints.

    python train.py                      # both models, good defaults
    python train.py --model classifier --epochs 5
    python train.py --dry-run            # a few seconds, for CI

Ctrl-C stops training early and still saves what has been learned so far.
"""
from __future__ import annotations

import argparse
import math
import random
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from data import ALPHABET, ArgumentParser, DATA_DIR, SPLIT_RULE, DataError, Dataset, load_dataset, pad_batch
from model import (CHECKPOINT_DIR, N_TOKENS, Classifier, CheckpointError, Generator, classify,
                   generator_batch, load_checkpoint, build, sample, save_checkpoint)

# Settings, gathered in one place. Each has a command-line flag.
CLASSIFIER = dict(epochs=20, hidden_size=128, lr=5e-3, batch_size=128, cell="gru", dropout=0.5, letter_dropout=0.1)
GENERATOR = dict(epochs=10, hidden_size=512, lr=3e-3, batch_size=64, cell="gru", dropout=0.5)
FALLBACK_TEMPERATURE = 0.7  # when no classifier is at hand to choose one
SEED = 1337
DRY_RUN_STEPS = 20  # batches per model with --dry-run
LOG_EVERY = 50  # steps between progress lines


# ----------------------------------------------------------------------------- helpers

def elapsed(since: float) -> str:
    seconds = time.time() - since
    return f"{int(seconds // 60)}m {int(seconds % 60)}s"


def length_batches(lengths: list[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Indices in batches of similar length, in random order: little padding, still shuffled."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], rng.random()))
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    rng.shuffle(batches)
    return batches


def cosine_lr(base_lr: float, step: int, total_steps: int) -> float:
    """Cosine decay from base_lr to a tenth of it: big steps early, fine ones at the end."""
    progress = min(step / max(total_steps, 1), 1.0)
    return base_lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def scores(truth: list[int], guesses: list[int], n_labels: int) -> dict:
    """Accuracy, macro-F1, balanced accuracy and per-label precision, recall, F1 and support."""
    confusion = torch.zeros(n_labels, n_labels, dtype=torch.long)
    for t, g in zip(truth, guesses):
        confusion[t, g] += 1
    correct = confusion.diag().double()
    support = confusion.sum(1).double()
    predicted = confusion.sum(0).double()
    recall = torch.where(support > 0, correct / support.clamp(min=1), torch.zeros_like(correct))
    precision = torch.where(predicted > 0, correct / predicted.clamp(min=1), torch.zeros_like(correct))
    f1 = torch.where(precision + recall > 0, 2 * precision * recall / (precision + recall).clamp(min=1e-12),
                     torch.zeros_like(correct))
    present = support > 0
    return {
        "accuracy": float(correct.sum() / max(len(truth), 1)),
        "macro_f1": float(f1[present].mean()),
        "balanced_accuracy": float(recall[present].mean()),
        "precision": precision.tolist(), "recall": recall.tolist(), "f1": f1.tolist(),
        "support": support.long().tolist(), "confusion": confusion.tolist(),
    }


def language_table(metrics: dict, languages: list[str]) -> str:
    rows = [f"{'language':<12} {'precision':>9} {'recall':>7} {'F1':>6} {'names':>6}"]
    for i, language in enumerate(languages):
        rows.append(f"{language:<12} {metrics['precision'][i]:>9.3f} {metrics['recall'][i]:>7.3f} "
                    f"{metrics['f1'][i]:>6.3f} {metrics['support'][i]:>6}")
    return "\n".join(rows)


def plot_losses(history: dict, path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(*zip(*history["train"]), label="training")
    if history["validation"]:
        ax.plot(*zip(*history["validation"]), marker="o", label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_confusion(confusion: list[list[int]], languages: list[str], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = torch.tensor(confusion, dtype=torch.double)
    rows = counts / counts.sum(1, keepdim=True).clamp(min=1)
    fig, ax = plt.subplots(figsize=(8, 7))
    image = ax.imshow(rows.numpy(), cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, label="share of the true language's test names")
    ticks = range(len(languages))
    ax.set_xticks(ticks, languages, rotation=90)
    ax.set_yticks(ticks, languages)
    ax.set_xlabel("guessed language")
    ax.set_ylabel("true language")
    ax.set_title("Classifier confusion on the test split (rows sum to 1)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ----------------------------------------------------------------------------- classifier

def evaluate_classifier(model: Classifier, examples: list[tuple[str, int]], n_labels: int) -> dict:
    """Scores and mean loss on examples, with dropout off."""
    was_training = model.training
    model.eval()
    log_probs = classify(model, [name for name, _ in examples])
    model.train(was_training)
    truth = torch.tensor([label for _, label in examples])
    metrics = scores(truth.tolist(), log_probs.argmax(1).tolist(), n_labels)
    metrics["loss"] = float(F.nll_loss(log_probs, truth))
    return metrics


def fit(model: torch.nn.Module, train: list[tuple[str, int]], loss_of, validate, epochs: int, lr: float,
        batch_size: int, rng: random.Random, max_steps: int | None, log) -> dict:
    """The loop both models share: Adam with cosine decay over batches of similar length.

    loss_of(examples) gives (loss, a note for the progress line); validate() gives
    (score, validation loss, summary) after each epoch, and the weights with the
    highest score are kept. Ctrl-C ends training early, keeping the best so far.
    """
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    total_steps = min(epochs * math.ceil(len(train) / batch_size), max_steps or math.inf)
    history = {"train": [], "validation": []}
    best = {"score": -math.inf, "state": None, "epoch": 0}
    step, window, start = 0, [], time.time()
    try:
        for epoch in range(1, epochs + 1):
            for batch in length_batches([len(name) for name, _ in train], batch_size, rng):
                if step >= total_steps:
                    break
                for group in optimiser.param_groups:
                    group["lr"] = cosine_lr(lr, step, total_steps)
                loss, note = loss_of([train[i] for i in batch])
                optimiser.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimiser.step()
                step += 1
                window.append(loss.item())
                if step % LOG_EVERY == 0 or step == total_steps:
                    history["train"].append((step, sum(window) / len(window)))
                    window = []
                    log(f"{step} {100 * step // total_steps}% ({elapsed(start)}) {history['train'][-1][1]:.4f}{note}")
            score, validation_loss, summary = validate()
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
    model.eval()
    history.update(steps=step, best_epoch=best["epoch"], seconds=time.time() - start)
    return history


def train_classifier(dataset: Dataset, epochs: int, hidden_size: int, lr: float, batch_size: int,
                     cell: str, dropout: float, letter_dropout: float, seed: int, max_steps: int | None = None,
                     log=print) -> tuple[Classifier, dict]:
    """Train on the train split; keep the weights with the best mean of validation accuracy,
    macro-F1 and balanced accuracy.

    Classes are weighted by the inverse square root of their size, so the small
    languages count without giving up much accuracy on the large ones.
    """
    torch.manual_seed(seed)
    train, validation = dataset.split("train"), dataset.split("validation")
    n_labels = len(dataset.languages)
    model = Classifier(len(ALPHABET), n_labels, hidden_size, cell, dropout=dropout, letter_dropout=letter_dropout)
    counts = torch.bincount(torch.tensor([label for _, label in train]), minlength=n_labels).double()
    weights = (counts.clamp(min=1) ** -0.5)
    weights = (weights / (weights * counts).sum() * counts.sum()).float()

    def loss_of(examples):
        names = [name for name, _ in examples]
        labels = torch.tensor([label for _, label in examples])
        log_probs = model(*pad_batch(names))
        guess, truth = (dataset.languages[int(i)] for i in (log_probs[0].argmax(), labels[0]))
        mark = "✓" if guess == truth else f"✗ ({truth})"
        return F.nll_loss(log_probs, labels, weight=weights), f" {names[0]} / {guess} {mark}"

    def validate():
        metrics = evaluate_classifier(model, validation, n_labels)
        score = (metrics["accuracy"] + metrics["macro_f1"] + metrics["balanced_accuracy"]) / 3
        return score, metrics["loss"], (
            f"validation loss {metrics['loss']:.4f} accuracy {metrics['accuracy']:.3f} "
            f"macro-F1 {metrics['macro_f1']:.3f} balanced accuracy {metrics['balanced_accuracy']:.3f}")

    history = fit(model, train, loss_of, validate, epochs, lr, batch_size, random.Random(seed), max_steps, log)
    return model, history


# ----------------------------------------------------------------------------- generator

def generator_nll(model: Generator, examples: list[tuple[str, int]], batch_size: int = 512) -> float:
    """Held-out NLL in nats per character, given the language and the first letter.

    Scores every letter after the first plus the end token, pooled over all names,
    so the figure compares with the tutorial, which is handed the first letter.
    """
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(examples), batch_size):
            chunk = examples[start:start + batch_size]
            inputs, targets = generator_batch([name for name, _ in chunk])
            targets[:, 0] = -100  # the first letter is given, not scored
            log_probs = model(torch.tensor([label for _, label in chunk]), inputs)
            total += float(F.nll_loss(log_probs.transpose(1, 2), targets, reduction="sum"))
            count += int((targets != -100).sum())
    model.train(was_training)
    return total / max(count, 1)


def train_generator(dataset: Dataset, epochs: int, hidden_size: int, lr: float, batch_size: int,
                    cell: str, dropout: float, seed: int, max_steps: int | None = None,
                    log=print) -> tuple[Generator, dict]:
    """Teacher-forced training on the train split; keep the weights with the best validation NLL."""
    torch.manual_seed(seed)
    train, validation = dataset.split("train"), dataset.split("validation")
    model = Generator(N_TOKENS, len(dataset.languages), hidden_size, cell, dropout)

    def loss_of(examples):
        inputs, targets = generator_batch([name for name, _ in examples])
        log_probs = model(torch.tensor([language for _, language in examples]), inputs)
        return F.nll_loss(log_probs.transpose(1, 2), targets), ""

    def validate():
        nll = generator_nll(model, validation)
        return -nll, nll, f"validation NLL {nll:.4f} nats/char"

    history = fit(model, train, loss_of, validate, epochs, lr, batch_size, random.Random(seed), max_steps, log)
    return model, history


def sample_quality(generator: Generator, classifier: Classifier, dataset: Dataset, temperature: float,
                   per_language: int = 100, max_length: int = 20, seed: int = SEED) -> dict:
    """How 100 free samples per language fare: ended, novel, distinct, judged as the asked language.

    "judged" is the share the classifier assigns to the requested language; its mean
    over languages is the classifier's balanced accuracy on generated names.
    """
    rng = torch.Generator().manual_seed(seed)
    known = {name for name, _ in dataset.pairs}
    counts = {}
    for index, language in enumerate(dataset.languages):
        samples = sample(generator, index, [None] * per_language, temperature,
                         max_length=max_length, rng=rng)
        names = [name for name, _ in samples]
        counts[language] = {
            "ended": sum(e for _, e in samples),
            "novel": sum(n not in known for n in names),
            "distinct": len(set(names)),
            "judged": int((classify(classifier, names).argmax(1) == index).sum()),
        }
    # shares from whole counts, so that e.g. 1,440 novel of 1,800 is exactly 0.8
    table = {language: {key: n / per_language for key, n in row.items()} for language, row in counts.items()}
    pooled = {key: sum(row[key] for row in counts.values()) / (per_language * len(counts))
              for key in next(iter(counts.values()))}
    return {"languages": table, "pooled": pooled}


def choose_temperature(generator: Generator, classifier: Classifier, dataset: Dataset,
                       log=print) -> tuple[float, list[dict]]:
    """The highest temperature (0.5 to 1.0, steps of 0.1) whose samples are judged their
    language at least as often as real test names are.

    Lower temperatures give more recognisable names but fewer new and distinct ones;
    this keeps as much variety as recognisability allows. Real test names set the bar
    because that is what the classifier's figure means to users; neither model is fitted to them.
    """
    real = evaluate_classifier(classifier, dataset.split("test"), len(dataset.languages))
    log(f"classifier balanced accuracy on real test names: {real['balanced_accuracy']:.3f}")
    chosen, rows = 0.5, []
    for tenths in range(5, 11):
        temperature = tenths / 10
        pooled = sample_quality(generator, classifier, dataset, temperature)["pooled"]
        rows.append({"temperature": temperature, **pooled})
        log(f"temperature {temperature:.1f}: judged as asked {pooled['judged']:.3f} novel {pooled['novel']:.3f} "
            f"distinct {pooled['distinct']:.3f} ended {pooled['ended']:.3f}")
        if pooled["judged"] >= real["balanced_accuracy"]:
            chosen = temperature
    return chosen, rows


# ----------------------------------------------------------------------------- command line

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=["all", "classifier", "generator"], default="all",
                        help="which model to train (default: all)")
    parser.add_argument("--epochs", type=int, help="passes over the training names "
                        f"(default: classifier {CLASSIFIER['epochs']}, generator {GENERATOR['epochs']})")
    parser.add_argument("--hidden-size", type=int, help="width of the recurrent state "
                        f"(default: classifier {CLASSIFIER['hidden_size']}, generator {GENERATOR['hidden_size']})")
    parser.add_argument("--lr", type=float, help="Adam's peak learning rate, decayed by a cosine "
                        f"(default: classifier {CLASSIFIER['lr']}, generator {GENERATOR['lr']})")
    parser.add_argument("--batch-size", type=int, help="names per step "
                        f"(default: classifier {CLASSIFIER['batch_size']}, generator {GENERATOR['batch_size']})")
    parser.add_argument("--cell", choices=["gru", "rnn"], help="recurrent cell (default: gru)")
    parser.add_argument("--dropout", type=float, help="dropout before the output layer "
                        f"(default: classifier {CLASSIFIER['dropout']}, generator {GENERATOR['dropout']})")
    parser.add_argument("--seed", type=int, default=SEED, help=f"random seed (default: {SEED})")
    parser.add_argument("--data-dir", default=str(DATA_DIR), help="folder of <Language>.txt files (default: data/names)")
    parser.add_argument("--out", default=str(CHECKPOINT_DIR), help="folder for checkpoints and plots (default: checkpoints)")
    parser.add_argument("--dry-run", action="store_true", help=f"train {DRY_RUN_STEPS} steps per model, for CI")
    args = parser.parse_args(argv)
    for flag in ("epochs", "hidden_size", "batch_size"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be at least 1")
    if args.lr is not None and not args.lr > 0:
        parser.error("--lr must be positive")
    if args.dropout is not None and not 0 <= args.dropout < 1:
        parser.error("--dropout must be in [0, 1)")
    return args


def settings_for(defaults: dict, args: argparse.Namespace) -> dict:
    """The model's defaults, overridden by the flags that were given."""
    given = {key: getattr(args, key) for key in defaults if getattr(args, key, None) is not None}
    return {**defaults, **given}


def run_classifier(dataset: Dataset, args: argparse.Namespace, out: Path) -> Classifier:
    settings = settings_for(CLASSIFIER, args)
    print(f"training the classifier: {settings}")
    model, history = train_classifier(dataset, seed=args.seed, max_steps=DRY_RUN_STEPS if args.dry_run else None,
                                      **settings)
    n_labels = len(dataset.languages)
    test = evaluate_classifier(model, dataset.split("test"), n_labels)
    validation = evaluate_classifier(model, dataset.split("validation"), n_labels)
    print(f"classifier trained in {history['seconds']:.1f} s ({history['steps']} steps, "
          f"best epoch {history['best_epoch']})")
    print(f"test split ({len(dataset.split('test'))} names): accuracy {test['accuracy']:.3f}  "
          f"macro-F1 {test['macro_f1']:.3f}  balanced accuracy {test['balanced_accuracy']:.3f}")
    print(language_table(test, dataset.languages))
    summary = {split: {key: metrics[key] for key in ("accuracy", "macro_f1", "balanced_accuracy", "loss")}
               for split, metrics in (("test", test), ("validation", validation))}
    save_checkpoint({
        "kind": "classifier",
        "model_args": {"n_letters": len(ALPHABET), "n_languages": n_labels,
                       "hidden_size": settings["hidden_size"], "cell": settings["cell"],
                       "dropout": settings["dropout"], "letter_dropout": settings["letter_dropout"]},
        "state_dict": model.state_dict(),
        "alphabet": ALPHABET, "languages": dataset.languages, "split_rule": SPLIT_RULE,
        "settings": {**settings, "seed": args.seed, "data_dir": args.data_dir, "dry_run": args.dry_run},
        "metrics": summary, "confusion": test["confusion"], "seconds": history["seconds"],
    }, out / "classifier.pt")
    plot_losses(history, out / "classifier_loss.png", "Classifier loss (class-weighted NLL)")
    plot_confusion(test["confusion"], dataset.languages, out / "confusion.png")
    print(f"saved {out / 'classifier.pt'}, {out / 'classifier_loss.png'}, {out / 'confusion.png'}")
    return model


def run_generator(dataset: Dataset, args: argparse.Namespace, out: Path, classifier: Classifier | None) -> None:
    settings = settings_for(GENERATOR, args)
    print(f"training the generator: {settings}")
    model, history = train_generator(dataset, seed=args.seed, max_steps=DRY_RUN_STEPS if args.dry_run else None,
                                     **settings)
    test_nll = generator_nll(model, dataset.split("test"))
    print(f"generator trained in {history['seconds']:.1f} s ({history['steps']} steps, best epoch {history['best_epoch']})")
    print(f"test split NLL: {test_nll:.3f} nats per character (first letter given; "
          f"uniform guessing: {math.log(N_TOKENS - 1):.3f})")
    if classifier is None:
        try:
            checkpoint = load_checkpoint(out / "classifier.pt", "classifier")
            if checkpoint["languages"] == dataset.languages:
                classifier = build(checkpoint)
        except CheckpointError:
            pass
    if classifier is None:
        temperature, table = FALLBACK_TEMPERATURE, []
        print(f"no classifier for these languages to choose a temperature: using {temperature}")
    else:
        temperature, table = choose_temperature(model, classifier, dataset)
        print(f"default sampling temperature: {temperature:.1f}")
    save_checkpoint({
        "kind": "generator",
        "model_args": {"n_tokens": N_TOKENS, "n_languages": len(dataset.languages),
                       "hidden_size": settings["hidden_size"], "cell": settings["cell"],
                       "dropout": settings["dropout"]},
        "state_dict": model.state_dict(),
        "alphabet": ALPHABET, "languages": dataset.languages, "split_rule": SPLIT_RULE,
        "settings": {**settings, "seed": args.seed, "data_dir": args.data_dir, "dry_run": args.dry_run},
        "metrics": {"test_nll": test_nll, "validation_nll": min(nll for _, nll in history["validation"])
                    if history["validation"] else math.nan},
        "temperature": temperature, "temperature_table": table, "seconds": history["seconds"],
    }, out / "generator.pt")
    plot_losses(history, out / "generator_loss.png", "Generator loss (NLL per character)")
    print(f"saved {out / 'generator.pt'}, {out / 'generator_loss.png'}")
    rng = torch.Generator().manual_seed(args.seed)
    for index, language in enumerate(dataset.languages):
        names = [name for name, _ in sample(model, index, [None] * 4, temperature, rng=rng)]
        print(f"  {language}: {', '.join(names)}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        dataset = load_dataset(args.data_dir)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if len(dataset.split("train")) == 0 or len(dataset.split("validation")) == 0:
        print(f"error: {args.data_dir} has too few names to split into training and validation", file=sys.stderr)
        return 2
    torch.manual_seed(args.seed)
    out = Path(args.out)
    start = time.time()
    classifier = run_classifier(dataset, args, out) if args.model in ("all", "classifier") else None
    if args.model in ("all", "generator"):
        run_generator(dataset, args, out, classifier)
    print(f"done in {time.time() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
