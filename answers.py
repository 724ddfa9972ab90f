"""What predict.py, sample.py and server.py share: checked requests, and the answers they give.

The limits themselves are one table in data.py; this module applies them the same
way everywhere, so a script and the server never disagree about what is allowed.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from data import (DATA_DIR, DEFAULT_MAX_LENGTH, DEFAULT_SAMPLES, MAX_BEAM, MAX_LENGTH_RANGE, MAX_SAMPLES, SEED_RANGE,
                  TEMPERATURE_RANGE, TOP_K_RANGE, DataError, Dataset, find_language, prefix_letters, start_letters,
                  load_dataset, write_as_data_set)
from model import CheckpointError, Classifier, Generator, beam_search, classify, final_states, invent

NEAREST = 3  # known names listed as "like" in an explanation


def run_script(body: Callable[[], int]) -> int:
    """A script's body with its errors as users should see them: one line on stderr; exit 1 for a missing or unusable
    checkpoint or output that cannot be written (a full disk, a read-only file system, a closed pipe), 2 for bad
    input, as argparse does."""
    try:
        status = body()
        sys.stdout.flush()
        return status
    except CheckpointError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # reading errors are DataErrors where they happen: this one is the output's
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # what is still buffered goes nowhere at exit
        print(f"error: cannot write the output: {error.strerror or error}", file=sys.stderr)
        return 1


def in_range(label: str, value: float, bounds: tuple[float, float]) -> float:
    """value if low <= value <= high (which also refuses nan), else a DataError naming the bounds."""
    low, high = bounds
    if not low <= value <= high:
        raise DataError(f"{label} must be between {low} and {high}")
    return value


def answers(names: list[str], normalised: list[str], log_probs: torch.Tensor, languages: list[str], top: int,
            sure_from: float) -> list[dict]:
    """The answer for each name: its best languages with calibrated log-probabilities, best first, and whether the
    top one is sure (its probability reaches the threshold at which validation answers were right 95% of the time)."""
    values, indices = log_probs.topk(min(top, len(languages)), dim=1)
    sure = (values[:, 0].exp() >= sure_from).tolist()
    return [{"name": name, "normalised": clean,
             "result": [[round(value, 4), languages[index]] for value, index in zip(row_values, row_indices)],
             "sure": row_sure}
            for name, clean, row_values, row_indices, row_sure in zip(names, normalised, values.tolist(),
                                                                       indices.tolist(), sure)]


@dataclass
class SampleRequest:
    """A checked request for invented names."""

    language: int
    prefixes: list[str]  # one per name (or per beam): folded letters it must begin with, "" to let the model choose
    temperature: float
    top_k: int
    seed: int | None
    beam: int  # 0 to sample; k for the k likeliest names per prefix
    novel: bool
    max_length: int


def sample_request(checkpoint: dict, language: str, start: str = "", prefix: str = "", count: int | None = None,
                   temperature: float | None = None, top_k: int | None = None, seed: int | None = None,
                   beam: int | None = None, novel: bool = True, max_length: int = DEFAULT_MAX_LENGTH) -> SampleRequest:
    """Check a request for names against the limits (DataError says what is wrong in one line); temperature and
    top-k default to the checkpoint's, chosen at training."""
    index = find_language(checkpoint["languages"], language)
    if len(start) > MAX_SAMPLES:
        raise DataError(f"at most {MAX_SAMPLES} start letters")
    starts = [letter.lower() for letter in start_letters(start)]
    folded_prefix = prefix_letters(prefix, max_length)
    if starts and folded_prefix:
        raise DataError("give start letters or a prefix, not both")
    count = DEFAULT_SAMPLES if count is None else int(in_range("n", count, (1, MAX_SAMPLES)))
    beam = 0 if beam is None else int(in_range("beam", beam, (1, MAX_BEAM)))
    if beam:
        prefixes = list(dict.fromkeys(starts)) or [folded_prefix]
    else:
        prefixes = starts or [folded_prefix] * count
    return SampleRequest(
        index, prefixes,
        checkpoint["temperature"] if temperature is None else in_range("temperature", temperature, TEMPERATURE_RANGE),
        checkpoint["top_k"] if top_k is None else int(in_range("top-k", top_k, TOP_K_RANGE)),
        None if seed is None else int(in_range("seed", seed, SEED_RANGE)),
        beam, novel, int(in_range("max-length", max_length, MAX_LENGTH_RANGE)))


def invented(model: Generator, checkpoint: dict, request: SampleRequest) -> dict:
    """The answer to a request for names: {"language", "names"}, and a "note" when fewer came back; a beam search
    gives [log-probability, name] pairs, best first, for each prefix in turn."""
    language = checkpoint["languages"][request.language]
    capital_after = checkpoint["casing"].get(language, "")
    shortest, longest = checkpoint["lengths"].get(language, (1, request.max_length))
    max_length = min(request.max_length, max(longest, *map(len, request.prefixes)))  # a prefix is never cut
    if request.beam:
        names = [[round(log_prob, 4), write_as_data_set(name, capital_after)]
                 for prefix in request.prefixes
                 for name, log_prob in beam_search(model, request.language, prefix, request.beam, max_length,
                                                   shortest)]
        return {"language": language, "names": names}
    avoid = set(checkpoint["known_names"]) if request.novel else None
    names = [name for name in invent(model, request.language, request.prefixes, request.temperature, capital_after,
                                     request.top_k, max_length, request.seed, avoid, shortest) if name is not None]
    answer = {"language": language, "names": names}
    if len(names) < len(request.prefixes):
        answer["note"] = (f"only {len(names)} of {len(request.prefixes)} names are new to the data set: "
                          "the model found no other new names within its draws")
    return answer


class NearestNames:
    """The data set's training names with their classifier states, to say which known names a name is like: built
    when `predict.py --explain` or the server starts, so that checkpoints stay small."""

    def __init__(self, model: Classifier, dataset: Dataset):
        languages: dict[str, list[str]] = {}
        for name, label in dataset.split("train"):
            languages.setdefault(name, []).append(dataset.languages[label])
        self.names = list(languages)
        self.languages = ["/".join(found) for found in languages.values()]
        self.states = F.normalize(final_states(model, self.names), dim=1)  # (N, directions*H), unit length

    @classmethod
    def of(cls, model: Classifier, checkpoint: dict) -> NearestNames:
        """The index for a classifier, from the data folder its checkpoint was trained on; DataError if unreadable."""
        return cls(model, load_dataset(checkpoint.get("settings", {}).get("data_dir", DATA_DIR)))

    def nearest(self, states: torch.Tensor, k: int = NEAREST) -> list[list[list]]:
        """For each state, the k most similar known names: [name, language, cosine similarity], best first."""
        similarity = F.normalize(states, dim=1) @ self.states.T
        values, indices = similarity.topk(min(k, len(self.names)), dim=1)
        return [[[self.names[i], self.languages[i], round(v, 4)] for v, i in zip(vs, js)]
                for vs, js in zip(values.tolist(), indices.tolist())]


def explanations(model: Classifier, names: list[str], known: NearestNames) -> list[dict]:
    """Why each normalised name got its top language: a score per letter, and the known names it is like. A letter's
    score is how far the top language's log-odds, log(p / (1 - p)), fall when it is dropped: positive where it pushed
    towards the answer. Log-odds keep telling letters apart when the model is sure, where p, or log p, stays near 1
    (or 0) whatever letter goes."""
    variants = [name[:i] + name[i + 1:] for name in names for i in range(len(name))]
    log_probs = classify(model, names + variants)
    whole, hidden = log_probs[:len(names)], log_probs[len(names):]
    nearest = known.nearest(final_states(model, names))
    result, start = [], 0
    for row, name in enumerate(names):
        top = int(whole[row].argmax())
        rows = torch.cat((whole[row:row + 1], hidden[start:start + len(name)]))
        start += len(name)
        odds = log_odds(rows, top)
        scores = (odds[0] - odds[1:]).tolist()
        result.append({"letters": [[letter, round(score, 4)] for letter, score in zip(name, scores)],
                       "nearest": nearest[row]})
    return result


def log_odds(log_probs: torch.Tensor, language: int) -> torch.Tensor:
    """log(p / (1 - p)) of one language in each row of log-probabilities, with 1 - p summed from the other languages,
    so that it stays finite and exact when p rounds to 1."""
    others = torch.cat((log_probs[:, :language], log_probs[:, language + 1:]), dim=1)
    return log_probs[:, language] - others.logsumexp(dim=1)


def explanation_lines(name: str, language: str, explanation: dict) -> list[str]:
    """The explanation as the CLI prints it: the name over its letter scores, then the names it is like."""
    cells = [(letter, f"{score:+.1f}") for letter, score in explanation["letters"]]
    width = max(len(text) for _, text in cells) + 1
    like = ", ".join(f"{known} ({languages})" for known, languages, _ in explanation["nearest"])
    return [f"{name} -> {language}",
            "  " + "".join(letter.center(width) for letter, _ in cells).rstrip(),
            "  " + "".join(text.center(width) for _, text in cells).rstrip(),
            f"  like: {like}"]
