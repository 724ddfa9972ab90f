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
from data import Dataset, case_patterns, fold, in_shape, in_split
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


def network_alone(model: Classifier) -> Callable[[list[str]], torch.Tensor]:
    """The classifier without its letter counts: what the network itself says, at its own temperature."""
    def log_probs(names: list[str]) -> torch.Tensor:
        share = float(model.counts_share)
        model.counts_share.fill_(0)
        try:
            return classify(model, names)
        finally:
            model.counts_share.fill_(share)
    return log_probs


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
    classifier, its network alone and naive Bayes trained on the same names. Returns what its checkpoint stores
    (with the test confusion matrix), and the reliability rows."""
    n_labels, threshold = len(dataset.languages), calibration["sure_threshold"]
    log(f"calibrated on {calibration['names']:,} validation names: temperature {calibration['temperature']:.3f}"
        + (f"; letter counts at a share of {calibration['counts_share']:.2f}" if "counts_share" in calibration
           else "") + f"; marked sure from probability {threshold:.3f}")
    readers = {"classifier": lambda names: classify(model, names), "network alone": network_alone(model),
               "naive Bayes": naive_bayes(train, n_labels)}
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

def scored_batches(examples: list[tuple[str, int]], device: torch.device, first_letter_given: bool = True,
                   batch_size: int = 512):
    """Teacher-forcing batches of held-out names in order of length: (languages, inputs, targets), -100 where nothing
    is scored. With the first letter given, as the tutorial's generator is, it is not scored; without, it is, as
    makemore scores names."""
    examples = sorted(examples, key=lambda example: len(example[0]))
    for start in range(0, len(examples), batch_size):
        chunk = examples[start:start + batch_size]
        inputs, targets = generator_batch([name for name, _ in chunk], device)
        if first_letter_given:
            targets[:, 0] = -100
        yield torch.tensor([label for _, label in chunk], device=device), inputs, targets


@torch.no_grad()
def generator_nlls(model: Generator, examples: list[tuple[str, int]]) -> tuple[float, float]:
    """Held-out NLL in nats per character of folded names, given the language, pooled over all names: with the first
    letter given, and with it scored too (see `scored_batches`), from one pass."""
    was_training = model.training
    model.eval()
    first = rest = 0.0
    firsts = letters = 0
    for language, inputs, targets in scored_batches(examples, device_of(model), first_letter_given=False):
        per_letter = F.nll_loss(model(language, inputs).transpose(1, 2), targets, reduction="none")  # 0 at -100
        first, rest = first + float(per_letter[:, 0].sum()), rest + float(per_letter[:, 1:].sum())
        firsts += int((targets[:, 0] != -100).sum())
        letters += int((targets[:, 1:] != -100).sum())
    model.train(was_training)
    return rest / max(letters, 1), (first + rest) / max(firsts + letters, 1)


def each_language(dataset: Dataset, lengths: dict[str, list[int]], per_language: int,
                  indices: list[int] | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """per_language rows of each language (of indices, or all) for one batch of `model.sample`: (languages, shortest,
    longest), so that every language is drawn at once."""
    rows = torch.tensor(range(len(dataset.languages)) if indices is None else indices).repeat_interleave(per_language)
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


def realism(generator: Generator, dataset: Dataset, real: list[tuple[str, int]], known: set[str],
            temperature: float, top_k: int, lengths: dict[str, list[int]], per_language: int = 1000,
            seed: int = 1337) -> dict:
    """How often an invented name is a real surname: per language with at least MIN_HELD_OUT names in real (held-out
    real names: their test part for reports), the share of the distinct new names among per_language draws that are
    real surnames of that language; and their mean over those languages."""
    held_out = {index: {fold(name) for name, label in real if label == index}
                for index in range(len(dataset.languages))}
    held_out = {index: names for index, names in held_out.items() if len(names) >= MIN_HELD_OUT}
    rows, shortest, longest = each_language(dataset, lengths, per_language, list(held_out))
    drawn = sample(generator, rows, [""] * len(rows), temperature, top_k, longest,
                   torch.Generator().manual_seed(seed), shortest)
    shares = {}
    for k, (index, names) in enumerate(held_out.items()):
        new = {name for name, _ in drawn[k * per_language:(k + 1) * per_language]} - known
        shares[dataset.languages[index]] = len(new & names) / max(len(new), 1)
    return {"languages": shares, "mean": sum(shares.values()) / len(shares) if shares else math.nan}


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


def expected_realism(generator: Generator, dataset: Dataset, real: list[tuple[str, int]], known: set[str],
                     temperature: float, top_k: int, casing: dict[str, str], lengths: dict[str, list[int]],
                     per_language: int = 1000) -> float:
    """`realism` without its sampling noise: per language with at least MIN_HELD_OUT names in real, the chance that a
    draw is one of them (`draw_probabilities`, exact) over the share of per_language draws that are new; their mean."""
    novel = sample_quality(generator, dataset, known, temperature, casing, lengths, top_k, per_language=per_language)
    shares = []
    for index, language in enumerate(dataset.languages):
        names = [name for name, label in real if label == index]
        if len(names) >= MIN_HELD_OUT:
            chance = draw_probabilities(generator, index, names, lengths[language][0], [(temperature, top_k)]).sum()
            shares.append(float(chance) / max(novel["languages"][language]["novel"], 1e-3))
    return sum(shares) / len(shares) if shares else math.nan


def request_distinct(generator: Generator, dataset: Dataset, known: set[str], temperature: float, top_k: int,
                     lengths: dict[str, list[int]], size: int = 100, seed: int = 3) -> float:
    """The share of requests for `size` new names, one per language, that comes back: distinct new names, pooled."""
    rows, shortest, longest = each_language(dataset, lengths, size)
    names = invent(generator, rows, [""] * len(rows), temperature, "", top_k, longest, seed, known, shortest)
    return sum(name is not None for name in names) / len(rows)


def report_generator(model: Generator, dataset: Dataset, sampling: dict, seed: int, log=print) -> dict:
    """Print the test NLLs, the network's alone beside the mixture's, and a few names per language; return the
    metrics its checkpoint stores."""
    test = dataset.split("test")
    nll, nll_scored = generator_nlls(model, test)
    share = float(model.counts_share)
    model.counts_share.fill_(0)
    alone = generator_nlls(model, test)[0]
    model.counts_share.fill_(share)
    log(f"test split NLL, nats per character with the first letter given: network alone {alone:.3f}, with the "
        f"letter counts at a share of {share:.3f} {nll:.3f} ({nll_scored:.3f} with the first letter scored too; "
        f"uniform guessing {math.log(N_TOKENS - 1):.3f})")
    log(f"new names at the default sampling temperature {sampling['temperature']:.2f} and top-k {sampling['top_k']}:")
    rows, shortest, longest = each_language(dataset, sampling["lengths"], 4)
    names = invent(model, rows, [""] * len(rows), sampling["temperature"], [sampling["casing"][dataset.languages[row]]
                   for row in rows], sampling["top_k"], longest, seed, set(sampling["known_names"]), shortest)
    for index, language in enumerate(dataset.languages):
        log(f"  {language}: {', '.join(name for name, row in zip(names, rows.tolist()) if row == index and name)}")
    return {"metrics": {"test_nll": nll, "test_nll_first_letter_scored": nll_scored, "test_nll_network": alone,
                        **sampling["counts"]}}
