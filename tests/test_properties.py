"""Properties that must hold for any input, searched for with hypothesis rather than listed by hand."""
import io
import json
import random
import string
import sys

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import predict
import data
from data import ALPHABET, MAX_NAME_LENGTH, DataError, in_split, normalise, usable_name
from helpers import mix_in_counts
from model import Classifier, classify

SPLITS = ("train", "validation", "test")

names = st.text(alphabet=st.characters(codec="ascii", categories=["L"]) | st.sampled_from(" '-"),
                min_size=1, max_size=MAX_NAME_LENGTH).filter(lambda n: any(c.isalpha() for c in n))


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=80))
def test_any_text_normalises_to_the_alphabet_or_a_one_line_error(text):
    assert all(c in ALPHABET for c in normalise(text))
    try:
        name = usable_name(text)
    except DataError as error:
        assert "\n" not in str(error) and str(error)
    else:
        assert name and name == name.strip() and all(c in ALPHABET for c in name)
        assert any(c.isalpha() for c in name)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(["a", "Z", " ", "-", "'", ".", ",;", "\t", "\n", "\xa0", "é", "´", "ь", "Ж", "😀"]),
                max_size=12).map("".join))
@example("Van  Dyke").via("two spaces")
@example(" Hinton").via("a leading space")
def test_names_returned_as_they_are_are_what_transliteration_gives(text):
    """normalise skips transliteration for text already in its alphabet, spaced once: the same answer."""
    assert normalise(text) == data._transliterate(text)


@settings(max_examples=200, deadline=None)
@given(st.lists(names, min_size=1, max_size=30))
def test_the_split_puts_every_name_in_exactly_one_split_whatever_its_language(batch):
    pairs = [(normalise(name), language) for name in batch for language in (0, 1)]
    parts = [in_split(pairs, which) for which in SPLITS]
    assert sorted(pair for part in parts for pair in part) == sorted(pairs)  # all of them, each once
    for part in parts:  # a name listed under two languages is in one split under both
        assert {(name, 1) for name, language in part if language == 0} <= set(part)


def test_the_splits_take_a_tenth_a_tenth_and_the_rest_of_any_names():
    rng = random.Random(0)
    made_up = [(f"{rng.choice(string.ascii_uppercase)}{rng.random():.12f}".replace(".", "x"), 0) for _ in range(20_000)]
    shares = {which: len(in_split(made_up, which)) / len(made_up) for which in SPLITS}
    assert shares["test"] == pytest.approx(0.1, abs=0.01) and shares["validation"] == pytest.approx(0.1, abs=0.01)
    assert shares["train"] == pytest.approx(0.8, abs=0.015)


MODEL = None


def tiny_model() -> Classifier:
    global MODEL
    if MODEL is None:
        torch.manual_seed(0)
        MODEL = Classifier(len(ALPHABET), 6, hidden_size=12).eval()
        mix_in_counts(MODEL)
    return MODEL


@settings(max_examples=60, deadline=None)
@given(st.lists(names.map(normalise).filter(bool), min_size=1, max_size=12))
def test_a_batch_of_random_names_scores_as_each_name_alone(batch):
    model = tiny_model()
    together = classify(model, batch)
    for name, row in zip(batch, together):
        torch.testing.assert_close(classify(model, [name])[0], row, atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def checkpoint(trained):
    return str(trained / "classifier.pt")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.binary(max_size=40).filter(lambda b: b"\n" not in b), min_size=1, max_size=15))
def test_predict_json_answers_one_valid_row_per_input_line(checkpoint, lines):
    data = b"\n".join(lines) + b"\n"
    stdin, stdout = io.TextIOWrapper(io.BytesIO(data)), io.StringIO()
    old = sys.stdin, sys.stdout
    sys.stdin, sys.stdout = stdin, stdout
    try:
        assert predict.main(["--checkpoint", checkpoint, "--json", "-"]) == 0
    finally:
        sys.stdin, sys.stdout = old
    rows = stdout.getvalue().split("\n")
    assert rows[-1] == "" and len(rows) - 1 == len(lines)  # no line split or lost: CR, FF, U+2028 stay inside
    for line, row in zip(lines, rows):
        record = json.loads(row)
        assert record["name"] == line.removesuffix(b"\r").decode("utf-8", errors="replace")
        assert ("error" in record) != ("result" in record and isinstance(record["sure"], bool))
