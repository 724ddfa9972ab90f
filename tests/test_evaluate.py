"""The figures behind every claim in README, checked on small cases worked out by hand."""
import math

import pytest
import torch
import torch.nn.functional as F

from counts import LetterCounts
from evaluate import count_letters, expected_calibration_error, mean_recall, naive_bayes, reliability, scores
from fitting import fit_temperature, sure_threshold
from model import N_TOKENS, generator_batch
from data import class_weights


def test_scores_on_a_confusion_worked_out_by_hand():
    # label 0: 3 names, 2 right (one guessed 1); label 1: 1 name, right; label 2: 2 names, both guessed 0
    truth = [0, 0, 0, 1, 2, 2]
    guesses = [0, 0, 1, 1, 0, 0]
    metrics = scores(truth, guesses, 4)  # label 3 never occurs: it counts in neither mean
    assert metrics["accuracy"] == pytest.approx(3 / 6)
    assert metrics["recall"][:3] == pytest.approx([2 / 3, 1.0, 0.0])
    assert metrics["precision"][:3] == pytest.approx([2 / 4, 1 / 2, 0.0])
    f1_0 = 2 * (2 / 4) * (2 / 3) / (2 / 4 + 2 / 3)
    f1_1 = 2 * 0.5 * 1.0 / 1.5
    assert metrics["macro_f1"] == pytest.approx((f1_0 + f1_1 + 0) / 3)
    assert metrics["balanced_accuracy"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert metrics["support"] == [3, 1, 2, 0]
    assert metrics["confusion"][2] == [2, 0, 0, 0]


def test_mean_recall_counts_only_languages_with_enough_names():
    metrics = {"recall": [1.0, 0.5, 0.0], "support": [40, 100, 39]}
    assert mean_recall(metrics) == pytest.approx(0.75)
    assert math.isnan(mean_recall({"recall": [1.0], "support": [3]}))


def test_ece_by_hand():
    # two names at confidence 0.9 (one right), two at 0.6 (both right)
    probs = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
    truth = torch.tensor([0, 1, 0, 0])
    rows = [row for row in reliability(probs.log(), truth) if row["count"]]
    assert [row["count"] for row in rows] == [2, 2]
    assert [row["accuracy"] for row in rows] == [1.0, 0.5]
    expected = (2 * abs(0.6 - 1.0) + 2 * abs(0.9 - 0.5)) / 4
    assert expected_calibration_error(probs.log(), truth) == pytest.approx(expected, abs=1e-6)


def test_fitted_temperature_lowers_nll_of_an_overconfident_model():
    torch.manual_seed(0)
    truth = torch.randint(0, 5, (2000,))
    logits = torch.randn(2000, 5)
    logits[torch.arange(2000), truth] += 1.0
    overconfident = F.log_softmax(4 * logits, dim=1)  # the true temperature is 4
    temperature = fit_temperature(overconfident, truth)
    assert 3.0 < temperature < 5.0
    before = F.nll_loss(overconfident, truth)
    calibrated = F.log_softmax(overconfident / temperature, dim=1)
    assert F.nll_loss(calibrated, truth) < before
    assert expected_calibration_error(calibrated, truth) < expected_calibration_error(overconfident, truth) / 2


def test_sure_threshold_reaches_the_precision_asked():
    torch.manual_seed(0)
    confidence = torch.rand(1000) * 0.5 + 0.5
    right = torch.rand(1000) < confidence  # right as often as it is confident: calibrated
    truth = torch.where(right, 0, 1)
    log_probs = torch.stack([confidence, 1 - confidence], dim=1).log()
    threshold = sure_threshold(log_probs, truth, precision=0.9)
    sure = confidence >= threshold
    assert right[sure].double().mean() >= 0.9
    assert 0.1 < sure.double().mean() < 0.9  # neither nothing nor everything
    assert sure_threshold(log_probs, torch.ones(1000, dtype=torch.long), precision=0.99) == 1.0


def test_the_sure_threshold_never_splits_answers_of_the_same_probability():
    """A name listed under two languages gets one answer, right for one and wrong for the other: a threshold at
    their probability marks both sure. 0.9 (right), then 0.8 twice (right, wrong): at 0.8, 2 of 3 are right."""
    log_probs = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.8, 0.2]]).log()
    truth = torch.tensor([0, 0, 1])
    assert sure_threshold(log_probs, truth, precision=0.75) == pytest.approx(0.9)
    assert sure_threshold(log_probs, truth, precision=0.6) == pytest.approx(0.8)


def test_class_weights_keep_the_data_sets_balance_whatever_real_names_add():
    data_set = [("a", 0, 1.0)] * 100 + [("b", 1, 1.0)] * 4
    real = [("c", 1, 0.3)] * 1000  # many real names of the small language
    weights = class_weights(data_set + real, [0] * 100 + [1] * 4, 2)
    totals = [100 * weights[0], (4 + 300) * weights[1]]
    assert float(totals[0] / totals[1]) == pytest.approx(10 / 2)  # sqrt(100) : sqrt(4), as without them


def test_naive_bayes_is_the_letter_counts_with_a_prior_and_counts_weights():
    examples = [(name, 0, 1.0) for name in ("Ivanov", "Petrov", "Sokolov", "Popov")]
    examples += [(name, 1, 1.0) for name in ("Tanaka", "Suzuki", "Sato", "Kato", "Abe", "Ono")]
    bayes = naive_bayes(examples, 2)
    log_probs = bayes(["Smirnov", "Nakata", "SMIRNOV"])
    assert log_probs.argmax(1).tolist() == [0, 1, 0]  # folded, as the classifier reads
    counts = count_letters(LetterCounts(N_TOKENS, 2, 5, 0.6), examples)
    likelihoods = counts.log_likelihoods(*generator_batch(["Smirnov"]))
    prior = torch.tensor([4.0, 6.0]).log()
    torch.testing.assert_close(log_probs[:1], (likelihoods + prior).log_softmax(1))
    heavy = naive_bayes(examples + [("Smirnov", 1, 50.0)], 2)
    assert heavy(["Smirnov"]).argmax(1).tolist() == [1]
