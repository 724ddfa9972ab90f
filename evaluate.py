"""Measure the models: accuracy, calibration and sample quality.

Reports use names the model never saw in training: the test split, and the test part of the
real surnames (`data.split_of` decides both). fitting.py and train.py use the same measures on
validation names, to choose.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from counts import LetterCounts
from data import Dataset, case_patterns, in_shape, in_split
from model import (CAPITALS, EOS, N_TOKENS, SOS, Classifier, Generator, classify, device_of, generator_batch,
                   invent, sample)

CALIBRATION_BINS = 15  # equal-width bins over the top probability, as the usual ECE
MIN_HELD_OUT = 300  # languages with fewer held-out real names are left out of the realism figure
MIN_NAMES_FOR_RECALL = 40  # languages with fewer held-out real names are too noisy to average


def scores(truth: list[int], guesses: list[int], n_labels: int) -> dict:
    """Accuracy, macro-F1, balanced accuracy and per-label precision, recall, F1 and support; labels absent from truth
    count in neither mean, having no recall to average."""
    pairs = torch.tensor(truth, dtype=torch.long) * n_labels + torch.tensor(guesses, dtype=torch.long)
    confusion = torch.bincount(pairs, minlength=n_labels * n_labels).reshape(n_labels, n_labels)
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


def mean_recall(metrics: dict, min_names: int = MIN_NAMES_FOR_RECALL) -> float:
    """Recall averaged over the languages with at least min_names names: the real-name headline."""
    kept = [r for r, n in zip(metrics["recall"], metrics["support"]) if n >= min_names]
    return sum(kept) / len(kept) if kept else math.nan


def reliability(log_probs: torch.Tensor, truth: torch.Tensor, bins: int = CALIBRATION_BINS) -> list[dict]:
    """Per equal-width bin of top probability: names in it, their mean confidence and accuracy."""
    confidence, guess = log_probs.exp().max(1)
    right = (guess == truth).double()
    which = (confidence * bins).long().clamp(max=bins - 1)
    rows = []
    for b in range(bins):
        inside = which == b
        count = int(inside.sum())
        rows.append({"low": b / bins, "high": (b + 1) / bins, "count": count,
                     "confidence": float(confidence[inside].double().mean()) if count else math.nan,
                     "accuracy": float(right[inside].mean()) if count else math.nan})
    return rows


def expected_calibration_error(log_probs: torch.Tensor, truth: torch.Tensor) -> float:
    """Mean gap between confidence and accuracy over the bins, weighted by how many names each holds."""
    rows = reliability(log_probs, truth)
    total = sum(row["count"] for row in rows)
    return sum(row["count"] * abs(row["confidence"] - row["accuracy"]) for row in rows if row["count"]) / max(total, 1)


def evaluate_classifier(model: Classifier, examples: list[tuple[str, int]], n_labels: int,
                        threshold: float = 1.0) -> dict:
    """Every classifier figure on examples (`figures`), from the model as it is (in eval mode for figures)."""
    if not examples:
        return {}
    return figures(classify(model, [name for name, _ in examples]), examples, n_labels, threshold)


def case_agreement(model: Classifier, names: list[str]) -> float:
    """Share of names whose top language is the same written as given, in UPPER and in lower case."""
    tops = [classify(model, [transform(name) for name in names]).argmax(1)
            for transform in (str, str.upper, str.lower)]
    return float(((tops[0] == tops[1]) & (tops[0] == tops[2])).double().mean())


def selection_score(data_set: dict, real_recall: float) -> float:
    """The mean of accuracy, macro-F1 and balanced accuracy on validation names, averaged with the mean
    per-language recall on real ones when there are any: what picks the best epoch and the counts' share."""
    score = (data_set["accuracy"] + data_set["macro_f1"] + data_set["balanced_accuracy"]) / 3
    return score if math.isnan(real_recall) else (score + real_recall) / 2


def classifier_score(model: Classifier, validation: list[tuple[str, int]], real_validation: list[tuple[str, int]],
                     n_labels: int, weights: torch.Tensor | None = None) -> tuple[float, dict, str]:
    """(selection score, the data set's validation metrics with the loss at the class weights, a summary line)."""
    metrics = evaluate_classifier(model, validation, n_labels)
    recall = evaluate_classifier(model, real_validation, n_labels)["mean_recall"] if real_validation else math.nan
    metrics["weighted_loss"] = float(F.nll_loss(metrics["log_probs"], metrics["truth"], weight=weights))
    summary = (f"validation accuracy {metrics['accuracy']:.3f} macro-F1 {metrics['macro_f1']:.3f} balanced accuracy "
               f"{metrics['balanced_accuracy']:.3f} loss {metrics['weighted_loss']:.4f}")
    if real_validation:
        summary += f"; real names mean recall {recall:.3f}"
    return selection_score(metrics, recall), metrics, summary


def count_letters(counts: LetterCounts, examples: list[tuple[str, int, float]]) -> LetterCounts:
    """counts, filled with the letter histories of (name, language, weight) examples."""
    device = counts.keys.device
    inputs, targets = generator_batch([name for name, _, _ in examples], device)
    counts.fill(torch.tensor([label for _, label, _ in examples], device=device), inputs, targets,
                torch.tensor([weight for _, _, weight in examples], device=device))
    return counts


def naive_bayes(train: list[tuple[str, int, float]], n_labels: int, order: int = 5,
                discount: float = 0.6) -> Callable[[list[str]], torch.Tensor]:
    """The baseline: each language's letter counts (`counts.LetterCounts`) read as a Bayes classifier, with the
    languages' shares of the training weight as the prior. Returns a function from names to log-probabilities."""
    counts = count_letters(LetterCounts(N_TOKENS, n_labels, order, discount), train)
    prior = torch.zeros(n_labels).index_add_(0, torch.tensor([label for _, label, _ in train]),
                                             torch.tensor([weight for _, _, weight in train])).clamp(min=1e-3)
    return lambda names: F.log_softmax(counts.log_likelihoods(*generator_batch(names)) + prior.log(), dim=1)


def figures(log_probs: torch.Tensor, examples: list[tuple[str, int]], n_labels: int, threshold: float) -> dict:
    """Every classifier figure from log-probabilities of examples, the sure answers' with them."""
    truth = torch.tensor([label for _, label in examples])
    metrics = scores(truth.tolist(), log_probs.argmax(1).tolist(), n_labels)
    top3 = log_probs.topk(min(3, n_labels), dim=1).indices
    sure = log_probs.exp().max(1).values >= threshold
    right = log_probs.argmax(1) == truth
    metrics.update(loss=float(F.nll_loss(log_probs, truth)),
                   top3=float((top3 == truth[:, None]).any(1).double().mean()),
                   ece=expected_calibration_error(log_probs, truth), mean_recall=mean_recall(metrics),
                   sure_coverage=float(sure.double().mean()),
                   sure_accuracy=float(right[sure].double().mean()) if sure.any() else math.nan,
                   log_probs=log_probs, truth=truth)
    return metrics


def report_classifier(model: Classifier, dataset: Dataset, real: list[tuple[str, int]],
                      train: list[tuple[str, int, float]], calibration: dict, log=print) -> tuple[dict, dict]:
    """Print every figure on names the model never trained on, the test split and the real names' test part: the
    classifier's, and naive Bayes's trained on the same names. (What the letter counts add to the network is the
    ladder's to say, docs/ladder.md.) Returns what its checkpoint stores (with the test confusion matrix), and the
    reliability rows."""
    n_labels, threshold = len(dataset.languages), calibration["sure_threshold"]
    log(f"calibrated on {calibration['names']:,} validation names: temperature {calibration['temperature']:.3f}"
        + (f"; letter counts at a share of {calibration['counts_share']:.2f}" if "counts_share" in calibration
           else "") + f"; marked sure from probability {threshold:.3f}")
    readers = {"classifier": lambda names: classify(model, names), "naive Bayes": naive_bayes(train, n_labels)}
    results = {}
    for key, examples in {"test": dataset.split("test"), "real": in_split(real, "test")}.items():
        if not examples:
            continue
        names = [name for name, _ in examples]
        results[key] = {label: figures(read(names), examples, n_labels, threshold) for label, read in readers.items()}
        results[key]["classifier"]["any_case"] = case_agreement(model, names)
        log(f"\n{'test split' if key == 'test' else 'real surnames from mimesis (test part)'}, {len(names)} names:")
        log(f"  {'':<15} {'accuracy':>8} {'macro-F1':>8} {'balanced':>8} {'recall':>7} {'ECE':>6} {'sure right':>10}")
        for label, m in results[key].items():
            log(f"  {label:<15} {m['accuracy']:>8.3f} {m['macro_f1']:>8.3f} {m['balanced_accuracy']:>8.3f} "
                f"{m['mean_recall']:>7.3f} {m['ece']:>6.3f} {m['sure_accuracy']:>10.3f}")
    if "test" in results:
        log("\n" + language_table(results["test"]["classifier"], dataset.languages))
    stored = {key: {label: headline(metrics) for label, metrics in by.items()} for key, by in results.items()}
    fields = {"sure_threshold": threshold, "calibration": calibration, "metrics": stored,
              "confusion": results["test"]["classifier"]["confusion"] if "test" in results else []}
    rows = {key: reliability(by["classifier"]["log_probs"], by["classifier"]["truth"]) for key, by in results.items()}
    return fields, {("test split" if key == "test" else "real names (mimesis)"): row for key, row in rows.items()}


def headline(metrics: dict) -> dict:
    """The figures worth storing in a checkpoint (no tensors, no per-language lists)."""
    keys = ("accuracy", "macro_f1", "balanced_accuracy", "top3", "loss", "ece", "mean_recall",
            "sure_coverage", "sure_accuracy", "any_case")
    return {key: metrics[key] for key in keys if key in metrics}


def language_table(metrics: dict, languages: list[str]) -> str:
    rows = [f"{'language':<12} {'precision':>9} {'recall':>7} {'F1':>6} {'names':>6}"]
    for i, language in enumerate(languages):
        if metrics["support"][i]:
            rows.append(f"{language:<12} {metrics['precision'][i]:>9.3f} {metrics['recall'][i]:>7.3f} "
                        f"{metrics['f1'][i]:>6.3f} {metrics['support'][i]:>6}")
    return "\n".join(rows)


# ----------------------------------------------------------------------------- generator

def scored_batches(examples: list[tuple[str, int]], device: torch.device, batch_size: int = 512):
    """Teacher-forcing batches of held-out names in order of length: (languages, inputs, targets), -100 where nothing
    is scored. The first letter is given, as the tutorial's generator is given it, and not scored."""
    examples = sorted(examples, key=lambda example: len(example[0]))
    for start in range(0, len(examples), batch_size):
        chunk = examples[start:start + batch_size]
        inputs, targets = generator_batch([name for name, _ in chunk], device)
        targets[:, 0] = -100
        yield torch.tensor([label for _, label in chunk], device=device), inputs, targets


@torch.no_grad()
def generator_nll(model: Generator, examples: list[tuple[str, int]]) -> float:
    """Held-out NLL in nats per letter of folded names, given the language and the first letter (`scored_batches`),
    pooled over all names. The model must be in eval mode."""
    total = letters = 0
    for language, inputs, targets in scored_batches(examples, device_of(model)):
        total += float(F.nll_loss(model(language, inputs).transpose(1, 2), targets, reduction="sum"))
        letters += int((targets != -100).sum())
    return total / max(letters, 1)


def each_language(dataset: Dataset, lengths: dict[str, list[int]],
                  per_language: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """per_language rows of each language for one batch of `model.sample`: (languages, shortest, longest), so that
    every language is drawn at once."""
    rows = torch.arange(len(dataset.languages)).repeat_interleave(per_language)
    limits = torch.tensor([lengths[language] for language in dataset.languages])[rows]
    return rows, limits[:, 0], limits[:, 1]


def sample_quality(generator: Generator, dataset: Dataset, known: set[str], temperature: float,
                   casing: dict[str, str], lengths: dict[str, list[int]], top_k: int = 0,
                   classifier: Classifier | None = None, per_language: int = 100, seed: int = 1337) -> dict:
    """How 100 free samples per language fare: ended; novel (not in known, the names it trained on); distinct; new
    (distinct and novel); cased (in a capitalisation its language's data-set names use); and, with a classifier,
    judged as the asked language, whose mean is the classifier's balanced accuracy on invented names."""
    rows, shortest, longest = each_language(dataset, lengths, per_language)
    drawn = sample(generator, rows, [""] * len(rows), temperature, top_k, longest,
                   torch.Generator().manual_seed(seed), shortest)
    judged = classify(classifier, [name for name, _ in drawn]).argmax(1) if classifier is not None else None
    patterns = case_patterns(dataset)
    counts = {}
    for index, language in enumerate(dataset.languages):
        part = slice(index * per_language, (index + 1) * per_language)
        names = [name for name, _ in drawn[part]]
        counts[language] = {
            "ended": sum(e for _, e in drawn[part]),
            "novel": sum(n not in known for n in names),
            "distinct": len(set(names)),
            "new": len(set(names) - known),
            "cased": sum(in_shape(name, casing[language], patterns[index]) for name in names),
        }
        if judged is not None:
            counts[language]["judged"] = int((judged[part] == index).sum())
    # shares from whole counts, so that e.g. 1,440 novel of 1,800 is exactly 0.8
    table = {language: {key: n / per_language for key, n in row.items()} for language, row in counts.items()}
    pooled = {key: sum(row[key] for row in counts.values()) / (per_language * len(counts))
              for key in next(iter(counts.values()))}
    return {"languages": table, "pooled": pooled}


@torch.no_grad()
def draw_probabilities(generator: Generator, language: int, names: list[str], min_length: int,
                       settings: list[tuple[float, int]]) -> torch.Tensor:
    """The probability that one draw at each (temperature, top-k) of settings is each of names: (settings, names).
    Exact, from one teacher-forced pass tempered and cut as `model.sample` does: no sampling noise."""
    inputs, targets = generator_batch(names, device_of(generator))
    log_probs = generator(torch.full((len(names),), language, device=inputs.device), inputs).float().cpu()
    log_probs[..., [SOS, *CAPITALS]] = -math.inf
    log_probs[:, :max(min_length, 1), EOS] = -math.inf
    targets, scored = targets.cpu().clamp(min=0), targets.cpu() >= 0
    rows = []
    for temperature, top_k in settings:
        logits = log_probs / temperature
        if top_k:
            logits = logits.masked_fill(logits < logits.topk(top_k, dim=-1).values[..., -1:], -math.inf)
        picked = logits.log_softmax(-1).gather(-1, targets[..., None])[..., 0]
        rows.append((picked * scored).nan_to_num(neginf=-1e4).sum(1).exp())
    return torch.stack(rows)


def expected_realism(generator: Generator, dataset: Dataset, real: list[tuple[str, int]], lengths: dict[str, list[int]],
                     settings: list[tuple[float, int]], qualities: list[dict]) -> list[float]:
    """How often a new name is a real surname, at each (temperature, top-k) of settings, without sampling noise: per
    language with at least MIN_HELD_OUT names in real (held-out real names), the chance that a draw is one of them
    (`draw_probabilities`) over the share of draws that are new (`sample_quality` at the same settings, in
    qualities); the mean over those languages, 0 where there are none."""
    shares = []
    for index, language in enumerate(dataset.languages):
        names = [name for name, label in real if label == index]
        if len(names) >= MIN_HELD_OUT:
            chances = draw_probabilities(generator, index, names, lengths[language][0], settings).sum(1).tolist()
            shares.append([chance / max(quality["languages"][language]["novel"], 1e-3)
                           for chance, quality in zip(chances, qualities)])
    return [sum(column) / len(shares) for column in zip(*shares)] if shares else [0.0] * len(settings)


def request_distinct(generator: Generator, dataset: Dataset, known: set[str], temperature: float, top_k: int,
                     lengths: dict[str, list[int]], size: int = 100, seed: int = 3) -> float:
    """The share of requests for `size` new names, one per language, that comes back: distinct new names, pooled."""
    rows, shortest, longest = each_language(dataset, lengths, size)
    names = invent(generator, rows, [""] * len(rows), temperature, "", top_k, longest, seed, known, shortest)
    return sum(name is not None for name in names) / len(rows)


def report_generator(model: Generator, dataset: Dataset, sampling: dict, seed: int, log=print) -> dict:
    """Print the test NLLs and a few names per language; return the metrics its checkpoint stores."""
    nll = generator_nll(model, dataset.split("test"))
    log(f"test split NLL, nats per letter with the first letter given: {nll:.3f} (uniform guessing "
        f"{math.log(N_TOKENS - 1):.3f})")
    log(f"new names at the default sampling temperature {sampling['temperature']:.2f} and top-k {sampling['top_k']}:")
    rows, shortest, longest = each_language(dataset, sampling["lengths"], 4)
    names = invent(model, rows, [""] * len(rows), sampling["temperature"], [sampling["casing"][dataset.languages[row]]
                   for row in rows], sampling["top_k"], longest, seed, set(sampling["known_names"]), shortest)
    for index, language in enumerate(dataset.languages):
        log(f"  {language}: {', '.join(name for name, row in zip(names, rows.tolist()) if row == index and name)}")
    return {"metrics": {"test_nll": nll, **sampling["counts"]}}
