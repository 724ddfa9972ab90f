import hashlib
import zlib
from collections import Counter

import pytest

from data import (ALPHABET, DATA_DIR, DataError, find_language, load_dataset, normalise, pad_batch,
                  split_of, start_letters, usable_name)


@pytest.mark.parametrize("text, expected", [
    ("Ślusàrski", "Slusarski"),
    ("Strauß", "Strauss"),
    ("Иванов", "Ivanov"),
    ("Wąsowski", "Wasowski"),
    ("Łukasiewicz", "Lukasiewicz"),
    ("O'Neil", "O'Neil"),
    ("  de\u00a0la   Cruz ", "de la Cruz"),
    ("Smith/Jones1:", "SmithJones"),
    ("123", ""),
])
def test_normalise(text, expected):
    assert normalise(text) == expected
    assert all(c in ALPHABET for c in normalise(text))


@pytest.mark.parametrize("text", ["", "123", " - ", "'"])
def test_a_name_without_letters_is_refused(text):
    with pytest.raises(DataError, match="no letters"):
        usable_name(text)


def test_shipped_data_matches_its_checksums():
    sums = (DATA_DIR / "SHA256SUMS").read_text().split("\n")
    files = [line.split() for line in sums if line.strip()]
    assert len(files) == 18
    for digest, name in files:
        assert hashlib.sha256((DATA_DIR / name.lstrip("*")).read_bytes()).hexdigest() == digest


def test_languages_sorted_and_pairs_distinct():
    dataset = load_dataset()
    assert dataset.languages == sorted(dataset.languages) and len(dataset.languages) == 18
    assert len(dataset.pairs) == len(set(dataset.pairs))
    arabic = dataset.languages.index("Arabic")
    assert sum(1 for _, label in dataset.pairs if label == arabic) == 108  # 2000 lines, 108 names


def test_split_rule_is_the_crc_of_the_name():
    for name in ["Hinton", "Ivanov", "Nakamura", "Smith"]:
        bucket = zlib.crc32(name.encode("ascii")) % 10
        assert split_of(name) == {0: "test", 1: "validation"}.get(bucket, "train")


def test_splits_are_disjoint_by_name_and_cover_every_pair():
    dataset = load_dataset()
    names = {which: {name for name, _ in dataset.split(which)} for which in ("train", "validation", "test")}
    assert not names["train"] & names["test"]
    assert not names["train"] & names["validation"]
    assert not names["validation"] & names["test"]
    sizes = Counter(split_of(name) for name, _ in dataset.pairs)
    assert sum(sizes.values()) == len(dataset.pairs)
    assert 0.07 < sizes["test"] / len(dataset.pairs) < 0.13
    # a name listed under two languages lands in one split with both
    shared = [name for name, count in Counter(n for n, _ in dataset.pairs).items() if count > 1]
    assert shared and all(len({split_of(n)}) == 1 for n in shared)
    assert load_dataset().split("test") == dataset.split("test")


def test_any_folder_of_label_files_works(tmp_path):
    (tmp_path / "male.txt").write_text("John\nPeter\nJohn\n", encoding="utf-8")
    (tmp_path / "female.txt").write_text("Mary\nAnna\n\n", encoding="utf-8")
    dataset = load_dataset(tmp_path)
    assert dataset.languages == ["female", "male"]
    assert sorted(dataset.pairs) == [("Anna", 0), ("John", 1), ("Mary", 0), ("Peter", 1)]


def test_missing_or_empty_data_folder_names_the_path(tmp_path):
    with pytest.raises(DataError, match="nowhere"):
        load_dataset(tmp_path / "nowhere")
    with pytest.raises(DataError, match=str(tmp_path)):
        load_dataset(tmp_path)


def test_find_language_ignores_case_and_lists_known_ones():
    assert find_language(["English", "Russian"], "russian") == 1
    with pytest.raises(DataError, match="English, Russian"):
        find_language(["English", "Russian"], "Klingon")


def test_start_letters():
    assert start_letters("rUs") == ["R", "U", "S"]
    for bad in ["R1", "é", "R S", "-"]:
        with pytest.raises(DataError):
            start_letters(bad)


def test_pad_batch():
    letters, lengths = pad_batch(["ab", "abc"])
    assert letters.shape == (2, 3) and lengths.tolist() == [2, 3]
    assert letters[0, 2] == 0 and letters[1].tolist() == [ALPHABET.index(c) for c in "abc"]
