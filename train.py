"""Train the surname classifier and the surname generator, and save their checkpoints.

    python train.py                      # both models, good defaults
    python train.py --model classifier --epochs 5
    python train.py --dry-run            # a few seconds, for CI

Ctrl-C stops training early and still saves the best weights seen so far.
"""
from __future__ import annotations

import argparse
import io
import math
import multiprocessing
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from data import (ALPHABET, DATA_DIR, MAX_NAME_LENGTH, SPLIT_RULE, TOP_K_RANGE, ArgumentParser, DataError, Dataset,
                  case_patterns, fold, in_shape, in_split, learn_casing, learn_lengths, load_dataset,
                  load_real_names)
from evaluate import (choose_temperature, evaluate_classifier, fit_counts_share, fit_temperature, generator_nll,
                      generator_nlls, headline, mean_recall, reliability, report_classifier, scores, sure_threshold)
from model import (CHECKPOINT_DIR, N_TOKENS, CheckpointError, Classifier, Generator, LetterCounts, classify,
                   generator_batch, invent, load_model, save_checkpoint)
from plots import plot_confusion, plot_losses, plot_reliability

# Settings, gathered in one place; every one has a command-line flag of the same name.
CLASSIFIER = dict(
    epochs=20,  # validation figures level off from about epoch 16; 30 gave nothing more
    hidden_size=128,  # 256 scored the same within seed noise at 4x the cost
    lr=5e-3,  # Adam's peak rate, tuned with the batch size below
    batch_size=128,  # 256 gave nothing more; 64 trains slower for the same figures
    cell="gru",  # gates carry a name's first letters to its end; the tanh cell forgets them
    dropout=0.5,  # before the output layer: beat 0.3 on validation macro-F1 and balanced accuracy
    letter_dropout=0.1,  # hides whole letters: +0.01 to +0.02 macro-F1 on two seeds; 0.2 gave nothing more
    real_weight=0.3,  # weight of a mimesis training name against a data-set name (0.5 and 1 did worse); 0: none
    ngram_buckets=65536,  # hashed 1-4-letter n-gram scores beside the RNN: +0.06 mean recall on real names; 0: none
    ngram_l2=1e-5,  # L2 penalty on the n-gram scores; without it they memorise training names (macro-F1 -0.02)
    precision="fp32",  # bf16 matrix products were no faster at 128 wide: the casts cost what they save
    count_order=5,  # each language's letter counts, mixed in after training (see `mix_in_classifier_counts`)
    count_discount=0.6,
)
GENERATOR = dict(
    epochs=8,  # 640 wide, in about the time 512 wide took for 10: validation NLL 1.640 against 1.647
    hidden_size=640,  # 512 / 768 / 1,024 for 10 epochs: validation NLL 1.649 / 1.626 / 1.632 at 1x / 1.7x / 2.6x
    lr=3e-3,
    batch_size=64,
    cell="gru",
    dropout=0.5,  # in the tutorial's second layer: with 512 wide, more novel and distinct samples than 0.4
    top_k=12,  # default for sampling, stored in the checkpoint: at 0.8, judged as asked 0.527 against 0.497 without
    precision="bf16",  # matrix products in bfloat16 (see `matmuls`): 75 to 57 s a loop, validation NLL 1.662 both
    real_weight=0.15,  # weight of a mimesis training name (in shape, see generator_examples): validation NLL 1.649
                       # against 1.662 without them, 512 wide; judged as asked 0.571 against 0.529 at temperature 0.8
    real_share=0.25,  # of the real names, drawn afresh each epoch (see `draw_share`); all of them: 1.641, 2.2x the time
    count_order=6,  # letter counts mixed in after training, up to 5 tokens of history (validation NLL 1.640 to 1.572;
                    # 5 / 7: 1.577 / 1.573); 0: the network alone
    count_discount=0.6,  # taken from each count, spread by the shorter history (0.5: 1.572, 0.75: 1.575, order 6)
)
FALLBACK_TEMPERATURE = 0.7  # sampling temperature when no classifier is at hand to choose one
SEED = 1337
DRY_RUN_STEPS = 20  # batches per model with --dry-run
LOG_EVERY = 50  # steps between progress lines
BF16_NATIVE = torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()
Example = tuple[str, int, float]  # (name, language, weight in the loss)


# ----------------------------------------------------------------------------- the loop

def elapsed(since: float) -> str:
    seconds = time.time() - since
    return f"{int(seconds // 60)}m {int(seconds % 60)}s"


def length_batches(lengths: list[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Indices in batches of similar length, in random order: little padding, still shuffled."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], rng.random()))
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    rng.shuffle(batches)
    return batches


def adam(model: torch.nn.Module, lr: float, weight_decay: dict[str, float]) -> torch.optim.Adam:
    """Adam in its fused form, one pass over each parameter per step: 1.5x faster classifier steps,
    as the classifier's n-gram table has a million scores. An L2 penalty c * |w|^2 is the gradient
    term 2c * w, which the optimiser adds itself: no pass over the table to compute the penalty.
    """
    parameters = list(model.named_parameters())
    groups = [{"params": [param for name, param in parameters if name not in weight_decay]}]
    groups += [{"params": [param], "weight_decay": 2 * weight_decay[name]}
               for name, param in parameters if name in weight_decay]
    return torch.optim.Adam(groups, lr=lr, fused=True)


def matmuls(precision: str) -> torch.autocast:
    """Where a training step's matrix products run: "bf16" is the CPU's bfloat16 units, through autocast.

    Weights, gradients and the optimiser stay float32. On a CPU without native bfloat16
    (AMX or AVX512-BF16) it would be emulated and slow, so there it stays float32.
    """
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16" and BF16_NATIVE)


def draw_share(examples: list[Example], share: float, rng: random.Random) -> list[Example]:
    """Each example with probability share, its weight divided by share: all of them in expectation, at a share of
    the cost."""
    if share >= 1:
        return list(examples)
    return [(name, label, weight / share) for name, label, weight in examples if rng.random() < share]


def cosine_lr(base_lr: float, step: int, total_steps: int) -> float:
    """Cosine decay from base_lr to a tenth of it: big steps early, fine ones at the end."""
    progress = min(step / max(total_steps, 1), 1.0)
    return base_lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def fit(model: torch.nn.Module, train: list, loss_of, validate, epochs: int, lr: float,
        batch_size: int, rng: random.Random, max_steps: int | None, log=print,
        weight_decay: dict[str, float] | None = None, precision: str = "fp32", extra: list[Example] | None = None,
        extra_share: float = 1.0) -> dict:
    """The loop both models share: Adam with cosine decay over batches of similar length.

    train holds examples whose first item is the name; loss_of(examples) gives (loss,
    a note for the progress line); validate() gives (score, validation loss, summary)
    after each epoch, and the weights with the highest score are kept. Ctrl-C ends
    training early, keeping the best so far. weight_decay maps a parameter's name to
    an L2 penalty, applied inside the optimiser's step; precision goes to `matmuls`.
    Each epoch also trains on a share of extra, drawn afresh (`draw_share`).
    """
    optimiser = adam(model, lr, weight_decay or {})
    if precision == "bf16" and not BF16_NATIVE:
        log("this CPU has no native bfloat16: training in float32")
    extra = extra or []
    per_epoch = len(train) + round(extra_share * len(extra))
    total_steps = min(epochs * math.ceil(per_epoch / batch_size), max_steps or math.inf)
    history = {"train": [], "validation": []}
    best = {"score": -math.inf, "state": None, "epoch": 0}
    step, window, start = 0, [], time.time()
    try:
        for epoch in range(1, epochs + 1):
            examples = train + draw_share(extra, extra_share, rng)
            for batch in length_batches([len(example[0]) for example in examples], batch_size, rng):
                if step >= total_steps:
                    break
                for group in optimiser.param_groups:
                    group["lr"] = cosine_lr(lr, step, total_steps)
                with matmuls(precision):
                    loss, note = loss_of([examples[i] for i in batch])
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


# ----------------------------------------------------------------------------- classifier

def classifier_args(settings: dict, n_languages: int) -> dict:
    """The classifier's constructor arguments: built once, used to construct and to save."""
    return {"n_letters": len(ALPHABET), "n_languages": n_languages, "hidden_size": settings["hidden_size"],
            "cell": settings["cell"], "dropout": settings["dropout"], "letter_dropout": settings["letter_dropout"],
            "ngram_buckets": settings["ngram_buckets"], "count_order": settings["count_order"],
            "count_discount": settings["count_discount"]}


def classifier_decay(settings: dict) -> dict[str, float]:
    """The classifier's L2 penalties by parameter name, for `adam`: the n-gram table's, when it has one."""
    return {"ngram_rows.weight": settings["ngram_l2"]} if settings["ngram_buckets"] else {}


def generator_args(settings: dict, n_languages: int) -> dict:
    return {"n_tokens": N_TOKENS, "n_languages": n_languages, "hidden_size": settings["hidden_size"],
            "cell": settings["cell"], "dropout": settings["dropout"], "count_order": settings["count_order"],
            "count_discount": settings["count_discount"]}


def training_examples(dataset: Dataset, real: list[tuple[str, int]], real_weight: float) -> list[Example]:
    """The data set's training names, with weight 1, then the real names of the train part."""
    examples = [(name, label, 1.0) for name, label in dataset.split("train")]
    if real_weight > 0:
        examples += [(name, label, real_weight) for name, label in in_split(real, "train")]
    return examples


def class_weights(examples: list[Example], data_set_labels: list[int], n_labels: int) -> torch.Tensor:
    """Per-language loss weights: each language's total weight is the square root of its data-set count.

    The square root lets the small languages count without giving up much accuracy on
    the large ones (full inverse-frequency weights trade too much of it). Counting only
    data-set names keeps the real names from shifting how often a language is guessed:
    7,000 Dutch real names against 297 in the data set teach what Dutch looks like, not
    that most names are Dutch.
    """
    weighted = torch.zeros(n_labels, dtype=torch.double)
    for _, label, weight in examples:
        weighted[label] += weight
    data_set = torch.bincount(torch.tensor(data_set_labels, dtype=torch.long), minlength=n_labels).double()
    weights = data_set.clamp(min=1) ** 0.5 / weighted.clamp(min=1e-3)
    return (weights / (weights * weighted).sum() * weighted.sum()).float()


def train_classifier(dataset: Dataset, train: list[Example], real: list[tuple[str, int]], settings: dict, seed: int,
                     max_steps: int | None = None, log=print) -> tuple[Classifier, dict]:
    """Train on train (see training_examples), then calibrate on the validation names of both sources.

    Keeps the epoch with the best validation score: the mean of accuracy, macro-F1
    and balanced accuracy on the data set, averaged with the mean per-language
    recall on real names when they are used.
    """
    torch.manual_seed(seed)
    n_labels = len(dataset.languages)
    validation, real_validation = dataset.split("validation"), in_split(real, "validation")
    model = Classifier(**classifier_args(settings, n_labels))
    weights = class_weights(train, [label for _, label in dataset.split("train")], n_labels)

    def loss_of(examples: list[Example]):
        names = [name for name, _, _ in examples]
        labels = torch.tensor([label for _, label, _ in examples])
        example_weights = weights[labels] * torch.tensor([weight for _, _, weight in examples])
        log_probs = model(*model.encode(names))
        loss = (F.nll_loss(log_probs, labels, reduction="none") * example_weights).sum() / example_weights.sum()
        guess, truth = (dataset.languages[int(i)] for i in (log_probs[0].argmax(), labels[0]))
        mark = "✓" if guess == truth else f"✗ ({truth})"
        return loss, f" {names[0]} / {guess} {mark}"

    def validate():
        score, metrics, recall = classifier_score(model, validation, real_validation, n_labels)
        weighted_loss = float(F.nll_loss(metrics["log_probs"], metrics["truth"], weight=weights))
        summary = (f"validation accuracy {metrics['accuracy']:.3f} macro-F1 {metrics['macro_f1']:.3f} "
                   f"balanced accuracy {metrics['balanced_accuracy']:.3f} loss {weighted_loss:.4f}")
        if real_validation:
            summary += f"; real names mean recall {recall:.3f}"
        return score, weighted_loss, summary

    history = fit(model, train, loss_of, validate, settings["epochs"], settings["lr"], settings["batch_size"],
                  random.Random(seed), max_steps, log, classifier_decay(settings), settings["precision"])
    calibration_names = validation + real_validation
    uncalibrated = evaluate_classifier(model, calibration_names, n_labels)
    model.temperature.fill_(fit_temperature(uncalibrated["log_probs"], uncalibrated["truth"]))
    calibrated = evaluate_classifier(model, calibration_names, n_labels)
    history["calibration"] = {"temperature": float(model.temperature), "names": len(calibration_names),
                              "nll_before": uncalibrated["loss"], "nll_after": calibrated["loss"]}
    if settings["count_order"]:
        history["counts"] = mix_in_classifier_counts(model, train, validation, real_validation)
        calibrated = evaluate_classifier(model, calibration_names, n_labels)
        history["counts"]["nll"] = calibrated["loss"]
    history["calibration"]["sure_threshold"] = sure_threshold(calibrated["log_probs"], calibrated["truth"])
    return model, history


def classifier_score(model: Classifier, validation: list[tuple[str, int]], real_validation: list[tuple[str, int]],
                     n_labels: int) -> tuple[float, dict, float]:
    """What picks the classifier's best epoch: see `selection_score`.

    Returns (score, the data set's metrics, real names' mean recall or nan).
    """
    metrics = evaluate_classifier(model, validation, n_labels)
    recall = evaluate_classifier(model, real_validation, n_labels)["mean_recall"] if real_validation else math.nan
    return selection_score(metrics, recall), metrics, recall


def selection_score(data_set: dict, real_recall: float) -> float:
    """The mean of accuracy, macro-F1 and balanced accuracy on validation names, averaged with the mean
    per-language recall on real ones when there are any: what picks the best epoch and the counts' share."""
    score = (data_set["accuracy"] + data_set["macro_f1"] + data_set["balanced_accuracy"]) / 3
    return score if math.isnan(real_recall) else (score + real_recall) / 2


def fill_counts(counts: LetterCounts, examples: list[Example]) -> None:
    """Count the letter histories of training examples, each at its weight."""
    inputs, targets = generator_batch([name for name, _, _ in examples])
    counts.fill(torch.tensor([label for _, label, _ in examples]), inputs, targets,
                torch.tensor([weight for _, _, weight in examples]))


def mix_in_classifier_counts(model: Classifier, train: list[Example], validation: list[tuple[str, int]],
                             real_validation: list[tuple[str, int]]) -> dict:
    """Count each language's letter histories in the training names, fit the temperature of a name's
    log-likelihoods on validation names, then choose the counts' share of the answer (0 to 0.6, steps of
    0.05) by the score that chose the best epoch, and fit the mixture's temperature: a share chosen for
    accuracy need not give honest probabilities. Returns the scores with and without them.
    """
    fill_counts(model.counts, train)
    parts = []  # per source of validation names: the network's answers, the counts' log-likelihoods, the truth
    for examples in (validation, real_validation):
        names = [name for name, _ in examples]
        parts.append((classify(model, names), model.counts.log_likelihoods(*generator_batch(names)),
                      torch.tensor([label for _, label in examples], dtype=torch.long)))
    likelihoods, truth = (torch.cat([part[i] for part in parts]) for i in (1, 2))
    model.counts_temperature.fill_(fit_temperature(likelihoods, truth))
    by_share = {}
    for twentieths in range(13):
        model.counts_share.fill_(twentieths / 20)
        data_set, real = (scores(labels.tolist(), model.mix(answers, counted).argmax(1).tolist(), model.n_languages)
                          for answers, counted, labels in parts)
        by_share[twentieths / 20] = selection_score(data_set, mean_recall(real) if real_validation else math.nan)
    share = max(by_share, key=by_share.get)
    model.counts_share.fill_(share)
    mixed = torch.cat([model.mix(answers, counted) for answers, counted, _ in parts])
    model.mixture_temperature.fill_(fit_temperature(mixed, truth))
    return {"temperature": float(model.counts_temperature), "share": share, "score_without": by_share[0.0],
            "score": by_share[share], "mixture_temperature": float(model.mixture_temperature)}


def run_classifier(dataset: Dataset, real: list[tuple[str, int]], args: argparse.Namespace, out: Path) -> Classifier:
    settings = settings_for(CLASSIFIER, args)
    print(f"training the classifier: {settings}")
    if real and settings["real_weight"] > 0:
        print(f"with {len(in_split(real, 'train')):,} real surnames from mimesis "
              f"(train part; weight {settings['real_weight']})")
    train = training_examples(dataset, real, settings["real_weight"])
    model, history = train_classifier(dataset, train, real, settings, args.seed, dry_run_steps(args))
    calibration = history["calibration"]
    print(f"classifier trained in {history['seconds']:.1f} s ({history['steps']} steps, "
          f"best epoch {history['best_epoch']})")
    print(f"calibration on {calibration['names']:,} validation names: temperature {calibration['temperature']:.3f}, "
          f"NLL {calibration['nll_before']:.4f} -> {calibration['nll_after']:.4f}; "
          f"marked sure from probability {calibration['sure_threshold']:.3f}")
    if "counts" in history:
        counts = history["counts"]
        print(f"each language's letter counts mixed in at a share of {counts['share']:.2f} (their log-likelihoods "
              f"at temperature {counts['temperature']:.3f}): validation score {counts['score_without']:.4f} -> "
              f"{counts['score']:.4f}; the mixture at temperature {counts['mixture_temperature']:.3f}, "
              f"NLL {counts['nll']:.4f}")
    results = report_classifier(model, dataset, real, train, calibration["sure_threshold"])
    validation = evaluate_classifier(model, dataset.split("validation"), len(dataset.languages),
                                     calibration["sure_threshold"])
    save_checkpoint({
        **checkpoint_head("classifier", classifier_args(settings, len(dataset.languages)), model, dataset,
                          settings, args),
        "sure_threshold": calibration["sure_threshold"], "calibration": calibration, "counts": history.get("counts"),
        "metrics": {"validation": headline(validation), **{key: headline(m) for key, m in results.items()}},
        "confusion": results["test"]["confusion"] if "test" in results else [], "seconds": history["seconds"],
    }, out / "classifier.pt")
    plot_losses(history, out / "classifier_loss.png", "Classifier loss (class-weighted NLL, data set names)")
    if "test" in results:
        plot_confusion(results["test"]["confusion"], dataset.languages, out / "confusion.png")
    plot_reliability({("test split" if key == "test" else "real names (mimesis)"):
                      reliability(m["log_probs"], m["truth"]) for key, m in results.items()}, out / "reliability.png")
    print(f"saved {out / 'classifier.pt'} and its plots in {out}")
    return model


# ----------------------------------------------------------------------------- generator

def generator_examples(dataset: Dataset, real: list[tuple[str, int]], real_weight: float) -> tuple[list[Example], ...]:
    """The data set's training names, weight 1, and the real names of the train part, drawn from each epoch.

    Only real names that the generator would write in a shape its language's data-set names
    use: without this it learnt `Ten Hensmans` and ten-letter Portuguese names, which the
    data set never writes (capitalisation share 0.984 against 0.999).
    """
    data_set = [(name, label, 1.0) for name, label in dataset.split("train")]
    if real_weight <= 0:
        return data_set, []
    casing, patterns = learn_casing(dataset), case_patterns(dataset)
    return data_set, [(name, label, real_weight) for name, label in in_split(real, "train")
                      if in_shape(fold(name), casing[dataset.languages[label]], patterns[label])]


def train_generator(dataset: Dataset, real: list[tuple[str, int]], settings: dict, seed: int,
                    max_steps: int | None = None, log=print) -> tuple[Generator, dict]:
    """Teacher-forced training on the train split and a share of real names each epoch; keep the best validation NLL.

    Validation is the data set's alone, so the NLL compares with a generator trained without real names.
    The letter counts are mixed in at the end (`mix_in_generator_counts`), still in the generator's own
    process when both models train: their validation passes overlap the classifier's report.
    """
    torch.manual_seed(seed)
    train, extra = generator_examples(dataset, real, settings["real_weight"])
    validation = dataset.split("validation")
    model = Generator(**generator_args(settings, len(dataset.languages)))

    def loss_of(examples: list[Example]):
        inputs, targets = generator_batch([name for name, _, _ in examples])
        log_probs = model(torch.tensor([language for _, language, _ in examples]), inputs)
        per_letter = F.nll_loss(log_probs.transpose(1, 2), targets, reduction="none")  # (B, T), 0 past the end
        weights = torch.tensor([weight for _, _, weight in examples])[:, None] * (targets != -100)
        return (per_letter * weights).sum() / weights.sum(), ""

    def validate():
        nll = generator_nll(model, validation)
        return -nll, nll, f"validation NLL {nll:.4f} nats/char"

    history = fit(model, train, loss_of, validate, settings["epochs"], settings["lr"], settings["batch_size"],
                  random.Random(seed), max_steps, log, precision=settings["precision"], extra=extra,
                  extra_share=settings["real_share"])
    if settings["count_order"]:
        history["counts"] = mix_in_generator_counts(model, train + extra, validation)
    return model, history


def mix_in_generator_counts(model: Generator, examples: list[Example], validation: list[tuple[str, int]]) -> dict:
    """Count what follows each short history in the names the network learnt from, at their weights,
    then fit the counts' share of the mixture on validation names: like the classifier's
    temperature, fitted after training, so training itself is the network's alone.
    """
    fill_counts(model.counts, examples)
    share, alone, mixed = fit_counts_share(model, validation)
    model.counts_share.fill_(share)
    return {"share": share, "validation_nll_network": alone, "validation_nll": mixed}


def run_generator(dataset: Dataset, real: list[tuple[str, int]], args: argparse.Namespace, out: Path,
                  classifier: Classifier | None, trained: tuple[Generator, dict] | None = None) -> None:
    """Train the generator unless trained (its model and history) is given, then report, choose and save."""
    settings = settings_for(GENERATOR, args)
    if trained is None:
        print(f"training the generator: {settings}")
        trained = train_generator(dataset, real, settings, args.seed, dry_run_steps(args))
    model, history = trained
    _, extra = generator_examples(dataset, real, settings["real_weight"])
    mixture = history.get("counts", {})
    if mixture:
        print(f"letter counts mixed in at a share of {mixture['share']:.3f}: validation NLL "
              f"{mixture['validation_nll_network']:.3f} for the network alone, {mixture['validation_nll']:.3f} mixed")
    test_nll, test_nll_all = generator_nlls(model, dataset.split("test"))
    print(f"generator trained in {history['seconds']:.1f} s ({history['steps']} steps, "
          f"best epoch {history['best_epoch']})")
    print(f"test split NLL: {test_nll:.3f} nats per character with the first letter given, {test_nll_all:.3f} "
          f"with it scored too (uniform guessing: {math.log(N_TOKENS - 1):.3f})")
    casing, lengths = learn_casing(dataset), learn_lengths(dataset)
    known = dataset.folded_names() | {fold(name) for name, _, _ in extra}  # all it trained on: what --novel avoids
    if classifier is None:
        try:
            classifier, checkpoint = load_model(out / "classifier.pt", "classifier")
            if checkpoint["languages"] != dataset.languages:
                classifier = None
        except CheckpointError:
            pass
    if classifier is None:
        temperature, table = FALLBACK_TEMPERATURE, []
        print(f"no classifier for these languages to choose a temperature: using {temperature}")
    else:
        temperature, table = choose_temperature(model, classifier, dataset, known, casing, lengths, settings["top_k"])
        print(f"default sampling temperature: {temperature:.2f}, with top-k {settings['top_k']}")
    save_checkpoint({
        **checkpoint_head("generator", generator_args(settings, len(dataset.languages)), model, dataset,
                          settings, args),
        "metrics": {"test_nll": test_nll, "test_nll_first_letter_scored": test_nll_all,
                    "validation_nll": min((nll for _, nll in history["validation"]), default=math.nan),
                    **mixture},
        "temperature": temperature, "top_k": settings["top_k"], "temperature_table": table,
        "casing": casing, "lengths": lengths, "known_names": sorted(known),
        "seconds": history["seconds"],
    }, out / "generator.pt")
    plot_losses(history, out / "generator_loss.png", "Generator loss (NLL per character)")
    print(f"saved {out / 'generator.pt'}, {out / 'generator_loss.png'}")
    for index, language in enumerate(dataset.languages):
        names = invent(model, index, [""] * 4, temperature, casing[language], settings["top_k"],
                       seed=args.seed + index, min_length=lengths[language][0], max_length=lengths[language][1])
        print(f"  {language}: {', '.join(names)}")


# ----------------------------------------------------------------------------- both at once

class TrainingError(Exception):
    """A training run that could not finish, worth one line to the user."""


def train_both(dataset: Dataset, real: list[tuple[str, int]], args: argparse.Namespace,
               out: Path) -> tuple[Classifier, tuple[Generator, dict]]:
    """The classifier here and the generator in a second process, one thread each, side by side.

    Their small tensors leave a second thread mostly idle: on two cores the pair took 130 s
    this way against 187 s one after the other with two threads each, when it was first
    measured. Ctrl-C stops both, and each keeps the best weights it has seen.
    """
    settings = settings_for(GENERATOR, args)
    print(f"training the generator in a second process, beside the classifier: {settings}")
    context = multiprocessing.get_context("spawn")  # a forked child would inherit torch's threads mid-use
    receiver, sender = context.Pipe(duplex=False)
    worker = context.Process(target=train_generator_apart, name="generator", daemon=True,
                             args=(args.data_dir, settings, args.seed, dry_run_steps(args), sender))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    worker.start()
    sender.close()

    def stop_both(signum, frame):  # a terminal's Ctrl-C reaches both processes; `kill -INT` only this one
        if worker.is_alive():
            os.kill(worker.pid, signal.SIGINT)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, stop_both)
    try:
        classifier = run_classifier(dataset, real, args, out)
        while True:
            try:
                trained = torch.load(io.BytesIO(receiver.recv_bytes()), weights_only=True)
                break
            except KeyboardInterrupt:  # the generator stops too, and sends the best weights it has
                continue
            except EOFError:
                raise TrainingError("the generator's training process ended without its weights (see above); "
                                    "the classifier is saved") from None
    finally:
        signal.signal(signal.SIGINT, previous)
        torch.set_num_threads(threads)
        worker.join(timeout=10)
        if worker.is_alive():
            worker.terminate()
    generator = Generator(**generator_args(settings, len(dataset.languages)))
    generator.load_state_dict(trained["state_dict"])
    return classifier, (generator.eval(), trained["history"])


def train_generator_apart(data_dir: str, settings: dict, seed: int, max_steps: int | None, sender) -> None:
    """train_generator in a process of its own, on one thread; its weights and history go back through sender.

    The first Ctrl-C stops training, keeping the best weights, and later ones are ignored:
    the weights always get back.
    """
    def stop_once(signum, frame):
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, stop_once)
    torch.set_num_threads(1)
    dataset = load_dataset(data_dir)
    model, history = train_generator(dataset, load_real_names(dataset), settings, seed, max_steps,
                                     log=lambda line: print(f"[generator] {line}", flush=True))
    buffer = io.BytesIO()  # plain bytes: tensors sent as they are would be shared memory, gone with this process
    torch.save({"state_dict": model.state_dict(), "history": history}, buffer)
    sender.send_bytes(buffer.getvalue())


# ----------------------------------------------------------------------------- command line

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    def both(key: str) -> str:
        return f"(default: classifier {CLASSIFIER[key]}, generator {GENERATOR[key]})"

    parser = ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=["all", "classifier", "generator"], default="all",
                        help="which model to train (default: all)")
    parser.add_argument("--epochs", type=int, help=f"passes over the training names {both('epochs')}")
    parser.add_argument("--hidden-size", type=int, help=f"width of the recurrent state {both('hidden_size')}")
    parser.add_argument("--lr", type=float, help=f"Adam's peak learning rate, decayed by a cosine {both('lr')}")
    parser.add_argument("--batch-size", type=int, help=f"names per step {both('batch_size')}")
    parser.add_argument("--cell", choices=["gru", "rnn"], help="recurrent cell (default: gru)")
    parser.add_argument("--dropout", type=float, help=f"dropout before the output layer {both('dropout')}")
    parser.add_argument("--precision", choices=["fp32", "bf16"], help="matrix products in training: bf16 uses "
                        f"the CPU's bfloat16 units where it has them {both('precision')}")
    parser.add_argument("--letter-dropout", type=float, help="classifier only: share of letters hidden while "
                        f"training (default: {CLASSIFIER['letter_dropout']})")
    parser.add_argument("--real-weight", type=float, help="weight of a real mimesis surname against a data-set "
                        f"name, 0 to leave them out {both('real_weight')}")
    parser.add_argument("--real-share", type=float, help="generator only: share of the real surnames drawn afresh "
                        f"each epoch, at real-weight / real-share (default: {GENERATOR['real_share']})")
    parser.add_argument("--ngram-buckets", type=int, help="classifier only: hashed n-gram scores beside the RNN, "
                        f"0 for none (default: {CLASSIFIER['ngram_buckets']})")
    parser.add_argument("--ngram-l2", type=float, help="classifier only: L2 penalty on the n-gram scores "
                        f"(default: {CLASSIFIER['ngram_l2']})")
    parser.add_argument("--count-order", type=int, help="n of the letter n-gram counts mixed with the network "
                        f"after training (n - 1 tokens of history), 0 for none {both('count_order')}")
    parser.add_argument("--count-discount", type=float, help="taken from each letter count for shorter histories "
                        f"{both('count_discount')}")
    parser.add_argument("--top-k", type=int, help="generator only: sampling draws among the k likeliest next letters "
                        f"by default, 0 among all; stored in the checkpoint (default: {GENERATOR['top_k']})")
    parser.add_argument("--seed", type=int, default=SEED, help=f"random seed (default: {SEED})")
    parser.add_argument("--data-dir", default=str(DATA_DIR), help="folder of <Language>.txt files "
                        "(default: data/names beside this script)")
    parser.add_argument("--out", default=str(CHECKPOINT_DIR), help="folder for checkpoints and plots "
                        "(default: checkpoints/ beside this script)")
    parser.add_argument("--dry-run", action="store_true", help=f"train {DRY_RUN_STEPS} steps per model, for CI")
    args = parser.parse_args(argv)
    for flag in ("epochs", "hidden_size", "batch_size"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be at least 1")
    if args.lr is not None and not args.lr > 0:
        parser.error("--lr must be positive")
    for flag in ("dropout", "letter_dropout"):
        if getattr(args, flag) is not None and not 0 <= getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be in [0, 1)")
    if args.real_share is not None and not 0 < args.real_share <= 1:
        parser.error("--real-share must be in (0, 1]")
    for flag, (low, high) in {"top_k": TOP_K_RANGE, "real_weight": (0, 10), "ngram_buckets": (0, 2**22),
                              "ngram_l2": (0, 1), "count_order": (0, 8), "count_discount": (0.01, 1)}.items():
        if getattr(args, flag) is not None and not low <= getattr(args, flag) <= high:
            parser.error(f"--{flag.replace('_', '-')} must be between {low} and {high}")
    return args


def checkpoint_head(kind: str, model_args: dict, model: torch.nn.Module, dataset: Dataset, settings: dict,
                    args: argparse.Namespace) -> dict:
    """What every checkpoint holds: enough to rebuild the model and check it fits this code.

    The data folder is stored absolute, so that it is found from anywhere.
    """
    return {"kind": kind, "model_args": model_args, "state_dict": model.state_dict(), "alphabet": ALPHABET,
            "languages": dataset.languages, "split_rule": SPLIT_RULE,
            "settings": {**settings, "seed": args.seed, "data_dir": str(Path(args.data_dir).resolve()),
                         "dry_run": args.dry_run}}


def dry_run_steps(args: argparse.Namespace) -> int | None:
    return DRY_RUN_STEPS if args.dry_run else None


def settings_for(defaults: dict, args: argparse.Namespace) -> dict:
    """The model's defaults, overridden by the flags that were given."""
    given = {key: getattr(args, key) for key in defaults if getattr(args, key, None) is not None}
    return {**defaults, **given}


def writable_folder(out: Path) -> None:
    """Make sure out is a folder we can write to before any training time is spent; OSError if not."""
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(20, "it is a file, not a folder")
    out.mkdir(parents=True, exist_ok=True)
    tempfile.TemporaryFile(dir=out).close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        dataset = load_dataset(args.data_dir)
        real = load_real_names(dataset)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if dataset.skipped:
        print(f"skipped {dataset.skipped:,} lines of {args.data_dir} longer than {MAX_NAME_LENGTH} characters")
    if len(dataset.split("train")) == 0 or len(dataset.split("validation")) == 0:
        print(f"error: {args.data_dir} has too few names to split into training and validation", file=sys.stderr)
        return 2
    out = Path(args.out)
    try:
        writable_folder(out)
    except OSError as error:
        print(f"error: cannot write checkpoints to {out}: {error.strerror or error}", file=sys.stderr)
        return 2
    torch.manual_seed(args.seed)
    start = time.time()
    try:
        if args.model == "all":
            run_generator(dataset, real, args, out, *train_both(dataset, real, args, out))
        elif args.model == "classifier":
            run_classifier(dataset, real, args, out)
        else:
            run_generator(dataset, real, args, out, None)
    except TrainingError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"done in {time.time() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
