"""What predict.py, sample.py and server.py share: checked requests, and the answers they give.

The limits themselves are one table in data.py; this module applies them the same
way everywhere, so a script and the server never disagree about what is allowed.
"""
from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch

from data import DEFAULT_SAMPLES, MAX_SAMPLES, SEED_RANGE, TEMPERATURE_RANGE, DataError, find_language, start_letters
from model import CheckpointError


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
