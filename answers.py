"""What predict.py, sample.py and server.py share: checked requests, and the answers they give.

The limits themselves are one table in data.py; this module applies them the same
way everywhere, so a script and the server never disagree about what is allowed.
"""
from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from data import (DEFAULT_SAMPLES, MAX_SAMPLES, SEED_RANGE, TEMPERATURE_RANGE, DataError, Dataset, find_language,
                  start_letters)
from model import CheckpointError, Classifier, classify, final_states

NEAREST = 3  # known names listed as "like" in an explanation


def run_script(body: Callable[[], int]) -> int:
    """A script's body with its errors as users should see them: one line on stderr.

    A missing or unusable checkpoint exits 1; bad input exits 2, as argparse does.
    """
    try:
        return body()
    except CheckpointError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def in_range(label: str, value: float, bounds: tuple[float, float]) -> float:
    """value if low <= value <= high (which also refuses nan), else a DataError naming the bounds."""
    low, high = bounds
    if not low <= value <= high:
        raise DataError(f"{label} must be between {low} and {high}")
    return value


def answer(name: str, normalised: str, log_probs: torch.Tensor, languages: list[str], top: int,
           sure_from: float) -> dict:
    """The answer for one name: its best languages with calibrated log-probabilities, best first.

    sure is true when the top probability reaches the checkpoint's threshold, chosen
    on validation names so that such answers are right at least 95% of the time.
    """
    values, indices = log_probs.topk(min(top, len(languages)))
    result = [[round(value, 4), languages[index]] for value, index in zip(values.tolist(), indices.tolist())]
    return {"name": name, "normalised": normalised, "result": result,
            "sure": bool(float(values[0].exp()) >= sure_from)}


@dataclass
class SampleRequest:
    """A checked request for invented names."""

    language: int
    starts: list[str | None]  # one entry per name: its start letter, or None to let the model choose
    temperature: float
    seed: int | None


def sample_request(languages: list[str], language: str, start: str, count: int | None,
                   temperature: float | None, default_temperature: float, seed: int | None) -> SampleRequest:
    """Check a request for names against the limits; DataError says what is wrong in one line."""
    index = find_language(languages, language)
    if len(start) > MAX_SAMPLES:
        raise DataError(f"at most {MAX_SAMPLES} start letters")
    starts = start_letters(start)
    count = DEFAULT_SAMPLES if count is None else int(in_range("n", count, (1, MAX_SAMPLES)))
    if temperature is not None:
        in_range("temperature", temperature, TEMPERATURE_RANGE)
    if seed is not None:
        in_range("seed", seed, SEED_RANGE)
    return SampleRequest(index, starts or [None] * count,
                         default_temperature if temperature is None else temperature, seed)


class NearestNames:
    """The data set's training names with their classifier states, to say which known names a name is like.

    Built once when `predict.py --explain` or the server starts (one pass of the classifier
    over the training split, and 4 bytes per state number in memory), rather than stored in
    the checkpoint, which stays small for everyone who does not ask for explanations.
    """

    def __init__(self, model: Classifier, dataset: Dataset):
        languages: dict[str, list[str]] = {}
        for name, label in dataset.split("train"):
            languages.setdefault(name, []).append(dataset.languages[label])
        self.names = list(languages)
        self.languages = ["/".join(found) for found in languages.values()]
        self.states = F.normalize(final_states(model, self.names), dim=1)  # (N, directions*H), unit length

    def nearest(self, states: torch.Tensor, k: int = NEAREST) -> list[list[list]]:
        """For each state, the k most similar known names: [name, language, cosine similarity], best first."""
        similarity = F.normalize(states, dim=1) @ self.states.T
        values, indices = similarity.topk(min(k, len(self.names)), dim=1)
        return [[[self.names[i], self.languages[i], round(v, 4)] for v, i in zip(vs, js)]
                for vs, js in zip(values.tolist(), indices.tolist())]


def explanations(model: Classifier, names: list[str], known: NearestNames) -> list[dict]:
    """Why each normalised name got its top language: a score per letter, and the known names it is like.

    A letter's score is the top language's log-probability for the whole name minus that
    for the name with the letter dropped (removed, the rest read as written): positive
    where the letter pushed towards the answer. Every variant of every name is scored in
    one batch, and a name scores the same in any batch, so the result does not depend on
    which other names are explained with it.
    """
    variants = [name[:i] + name[i + 1:] for name in names for i in range(len(name))]
    log_probs = classify(model, names + variants)
    whole, hidden = log_probs[:len(names)], log_probs[len(names):]
    nearest = known.nearest(final_states(model, names))
    result, start = [], 0
    for row, name in enumerate(names):
        top = int(whole[row].argmax())
        drops = hidden[start:start + len(name), top]
        start += len(name)
        scores = (whole[row, top] - drops).tolist()
        result.append({"letters": [[letter, round(score, 4)] for letter, score in zip(name, scores)],
                       "nearest": nearest[row]})
    return result


def explanation_lines(name: str, language: str, explanation: dict) -> list[str]:
    """The explanation as the CLI prints it: the name over its letter scores, then the names it is like."""
    cells = [(letter, f"{score:+.1f}") for letter, score in explanation["letters"]]
    width = max(len(text) for _, text in cells) + 1
    like = ", ".join(f"{known} ({languages})" for known, languages, _ in explanation["nearest"])
    return [f"{name} -> {language}",
            "  " + "".join(letter.center(width) for letter, _ in cells).rstrip(),
            "  " + "".join(text.center(width) for _, text in cells).rstrip(),
            f"  like: {like}"]
