"""What is fitted after training, on validation names: everything a checkpoint holds besides the weights.

The classifier: its temperature, the letter counts' temperature and share, the mixture's
temperature and the sure threshold. The generator: the letter counts' share and the default
sampling temperature and top-k. The networks train alone (train.py); these fits take seconds,
and evaluate.py then measures the result on names neither ever saw.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from data import Dataset, fold, in_split, learn_casing, learn_lengths
from evaluate import (count_letters, expected_realism, mean_recall, request_distinct, sample_quality, scored_batches,
                      scores, selection_score)
from model import Classifier, Generator, classify, device_of, generator_batch, mixture

SURE_PRECISION = 0.95  # answers marked sure must be right this often on validation
DISTINCT_SHARE = 0.95  # at the default sampling settings, a request for 100 new names comes back at least this full
MAX_DRAWS = 3  # and a distinct new name costs at most this many draws on average
SAMPLING_GRID = [(temperature, top_k) for top_k in (0, 12) for temperature in (0.4, 0.5, 0.6, 0.8)]


def minimise(loss: Callable[[float], float], low: float, high: float, steps: int) -> float:
    """Where a convex function of one number is lowest, by golden-section search between low and high."""
    ratio = (math.sqrt(5) - 1) / 2
    for _ in range(steps):
        a, b = high - ratio * (high - low), low + ratio * (high - low)
        if loss(a) < loss(b):
            high = b
        else:
            low = a
    return (low + high) / 2


def fit_temperature(log_probs: torch.Tensor, truth: torch.Tensor) -> float:
    """The T that minimises the NLL of log_softmax(log_probs / T): one number, so the ranking never changes.

    Searched over log T in [1/20, 20]; the NLL is convex in 1/T.
    """
    def nll(log_t: float) -> float:
        return float(F.nll_loss(F.log_softmax(log_probs / math.exp(log_t), dim=1), truth))

    return round(math.exp(minimise(nll, math.log(0.05), math.log(20.0), 60)), 4)


def sure_threshold(log_probs: torch.Tensor, truth: torch.Tensor, precision: float = SURE_PRECISION) -> float:
    """The lowest top probability above which answers are right at least `precision` of the time (1.0, nothing marked
    sure, if none is): answers at or above it are marked sure. Only between two different probabilities: a name
    listed under two languages is answered alike for both, once right and once wrong, and a threshold takes both."""
    confidence, guess = log_probs.exp().max(1)
    order = confidence.argsort(descending=True)
    right = (guess == truth)[order].double()
    running = right.cumsum(0) / torch.arange(1, len(right) + 1)
    ranked = confidence[order]
    last_of_its_value = torch.cat((ranked[1:] < ranked[:-1], torch.tensor([True])))
    good = ((running >= precision) & last_of_its_value).nonzero()
    if len(good) == 0:
        return 1.0
    return float(ranked[int(good.max())])


def fit_classifier(model: Classifier, train: list[tuple[str, int, float]], validation: list[tuple[str, int]],
                   real_validation: list[tuple[str, int]], counts: bool = True, temperatures: bool = True) -> dict:
    """After training, on validation names of both sources: the network's temperature; then (counts) the letter
    counts, their log-likelihoods' temperature, their share (0 to 0.6 in steps of 0.05, the best selection score) and
    the mixture's temperature, since a share chosen for accuracy need not give honest probabilities; then the sure
    threshold. Without temperatures, the network's and the mixture's stay 1: the ladder's rungs below calibration."""
    examples = validation + real_validation
    names, truth = [name for name, _ in examples], torch.tensor([label for _, label in examples])
    for buffer, value in ((model.temperature, 1), (model.counts_share, 0), (model.mixture_temperature, 1)):
        buffer.fill_(value)  # the network as trained, whatever was fitted before
    before = classify(model, names)
    if temperatures:
        model.temperature.fill_(fit_temperature(before, truth))
    network = F.log_softmax(before / float(model.temperature), dim=1)  # what classify now gives, without a pass
    result = {"temperature": float(model.temperature), "names": len(names),
              "nll_before": float(F.nll_loss(before, truth)), "nll_after": float(F.nll_loss(network, truth))}
    if counts:
        count_letters(model.counts, train)
        likelihoods = model.counts.log_likelihoods(*generator_batch(names, model.counts.keys.device)).cpu()
        model.counts_temperature.fill_(fit_temperature(likelihoods, truth))
        parts = (slice(0, len(validation)), slice(len(validation), len(examples)))
        by_share = {}
        for twentieths in range(13):
            model.counts_share.fill_(twentieths / 20)
            guesses = model.mix(network, likelihoods).argmax(1)
            data_set, real = (scores(truth[part].tolist(), guesses[part].tolist(), model.n_languages)
                              for part in parts)
            by_share[twentieths / 20] = selection_score(data_set, mean_recall(real) if real_validation else math.nan)
        share = max(by_share, key=by_share.get)
        model.counts_share.fill_(share)
        if temperatures:
            model.mixture_temperature.fill_(fit_temperature(model.mix(network, likelihoods), truth))
        result.update(counts_share=share, counts_temperature=float(model.counts_temperature),
                      mixture_temperature=float(model.mixture_temperature), score_without=by_share[0.0],
                      score=by_share[share])
    result["sure_threshold"] = sure_threshold(classify(model, names), truth)  # on exactly what users will be told
    return result


@torch.no_grad()
def fit_counts_share(model: Generator, train: list[tuple[str, int, float]], validation: list[tuple[str, int]]) -> dict:
    """Count the letter histories of the names the network learnt from, at their weights, and fit the counts' share
    to minimise the validation NLL (convex in it). Returns it, and the NLL of the network alone and of the mixture."""
    count_letters(model.counts, train)
    model.counts_share.fill_(0)  # the network alone
    network, counted = [], []
    for language, inputs, targets in scored_batches(validation, device_of(model)):
        scored, where = targets != -100, targets.clamp(min=0)[..., None]
        network.append(model(language, inputs).gather(-1, where)[..., 0][scored])
        counts = model.counts(language[:, None].expand_as(inputs), model.counts.contexts(inputs))
        counted.append(counts.gather(-1, where)[..., 0][scored])
    network, counted = torch.cat(network).double().cpu(), torch.cat(counted).double().cpu()

    def nll(share: float) -> float:
        return -float(mixture(network, counted.log(), share).mean())

    share = round(minimise(nll, 1e-4, 1 - 1e-4, 40), 4)
    model.counts_share.fill_(share)
    return {"share": share, "validation_nll_network": -float(network.mean()), "validation_nll": nll(share)}


def choose_sampling(generator: Generator, dataset: Dataset, real: list[tuple[str, int]], known: set[str],
                    casing: dict[str, str], lengths: dict[str, list[int]], log=print) -> tuple[float, int, list[dict]]:
    """The default temperature and top-k: of SAMPLING_GRID, the pair whose new names are most often real surnames,
    among those where a new name costs at most MAX_DRAWS draws and a request of 100 new names per language comes back
    at least DISTINCT_SHARE full. Realism is its expectation on the validation part of the real names: the chance that
    a draw is one of them (`draw_probabilities`) over the share of draws that are new, from 100 free draws per
    language (0 without such names: then the coolest pair that qualifies). Returns the pair and every pair's figures."""
    qualities = [sample_quality(generator, dataset, known, temperature, casing, lengths, top_k, seed=1)
                 for temperature, top_k in SAMPLING_GRID]
    realisms = expected_realism(generator, dataset, real, lengths, SAMPLING_GRID, qualities)
    rows = [{"temperature": temperature, "top_k": top_k, "realism": found,
             "draws": 1 / max(quality["pooled"]["new"], 1e-3)}
            for (temperature, top_k), quality, found in zip(SAMPLING_GRID, qualities, realisms)]
    for row in sorted(rows, key=lambda row: -row["realism"]):
        if row["draws"] <= MAX_DRAWS:
            row["distinct"] = request_distinct(generator, dataset, known, row["temperature"], row["top_k"], lengths)
            if row["distinct"] >= DISTINCT_SHARE:
                break
    else:  # nothing qualifies: the most varied pair
        row = max(rows, key=lambda row: (row["temperature"], row["top_k"]))
    for tried in rows:
        log(" ".join(f"{key} {value:.4g}" for key, value in tried.items()))
    return row["temperature"], row["top_k"], rows


def fit_generator(generator: Generator, dataset: Dataset, real: list[tuple[str, int]],
                  train: list[tuple[str, int, float]], counts: bool = True, sampling: bool = True, log=print) -> dict:
    """After training: the letter counts' share (counts), then what a generator checkpoint holds for sampling: how
    each language is written (casing, shortest and longest name), every name it trained on (which new names avoid),
    and the default temperature and top-k, chosen on validation names (sampling; else 1 and all letters, plain
    draws: the ladder's rungs below the sampling defaults)."""
    generator.counts_share.fill_(0)
    fitted = {"counts": fit_counts_share(generator, train, dataset.split("validation")) if counts else {}}
    casing, lengths = learn_casing(dataset), learn_lengths(dataset)
    known = {fold(name) for name, _ in dataset.pairs} | {fold(name) for name, _, _ in train}
    temperature, top_k, table = 1.0, 0, []
    if sampling:
        temperature, top_k, table = choose_sampling(generator, dataset, in_split(real, "validation"), known, casing,
                                                    lengths, log)
    return {**fitted, "temperature": temperature, "top_k": top_k, "sampling_table": table, "casing": casing,
            "lengths": lengths, "known_names": sorted(known)}
