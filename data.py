"""Load the surname files, normalise them to ASCII and split them by name.

A data folder holds one `<Label>.txt` file per label (a language, for the names
that ship in `data/names/`), one example per line, UTF-8.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import string
import tempfile
import unicodedata
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch
from anyascii import anyascii

DATA_DIR = Path(__file__).resolve().parent / "data" / "names"
ALPHABET = string.ascii_letters + " .,;'-"
LETTER_INDEX = {letter: i for i, letter in enumerate(ALPHABET)}
SPLIT_RULE = "zlib.crc32(name.encode('ascii')) % 10: 0 test, 1 validation, else train"
# Limits on input: one table for the scripts, the server and the page (which reads it from the server).
MAX_NAME_LENGTH = 50  # characters of a name as given; the data set's longest is 20 letters
DEFAULT_TOP = 3  # languages per answer unless asked for more, as in the tutorial's predict.py
MAX_SAMPLES = 100  # invented names per call: keeps one request well under a second
DEFAULT_SAMPLES = 5  # invented names per call when no start letters are given
TEMPERATURE_RANGE = (0.1, 2.0)  # below 0.1 sampling is greedy in all but name; above 2 it is noise
SEED_RANGE = (0, 2**63 - 1)  # what torch.Generator.manual_seed takes on every platform
TOP_K_RANGE = (0, 60)  # sampling keeps the k likeliest next tokens; 0 keeps them all
MAX_BEAM = 20  # names from one beam search
DEFAULT_MAX_LENGTH = 20  # letters in an invented name, and so in a prefix, unless asked otherwise
MAX_LENGTH_RANGE = (1, 100)  # letters in an invented name (default 20; the data set's longest is 20)
_NOT_ALLOWED = re.compile(f"[^{re.escape(ALPHABET)}]")
_SPACES = re.compile(r" +")
_SOFT_SIGN_BEFORE_VOWEL = re.compile("[ьЬ](?=[аеёиоуыэюяАЕЁИОУЫЭЮЯ])")
_WORD = f"[{re.escape(ALPHABET.replace(' ', ''))}]+"
_NORMAL = re.compile(f"{_WORD}(?: {_WORD})*")  # text that normalise would give back unchanged


# mimesis locales whose surname lists are written as the data set writes that language. Left out:
# ja, ko and the Arabic-script lists, which transliterate into forms the data set never uses.
REAL_NAME_LOCALES = {
    "Chinese": ("zh",), "Czech": ("cs",), "Dutch": ("nl", "nl-be"), "English": ("en", "en-au", "en-ca", "en-gb"),
    "French": ("fr",), "German": ("de", "de-at", "de-ch"), "Greek": ("el",), "Italian": ("it",),
    "Polish": ("pl",), "Portuguese": ("pt", "pt-br"), "Russian": ("ru",), "Spanish": ("es", "es-mx"),
}


class DataError(Exception):
    """A problem with user-supplied data or input, worth one line to the user."""


class UnknownLanguage(DataError):
    """A language the models do not know: the server answers it with 404, not 400."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports a bad command line in one line instead of the whole usage text."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def normalise(text: str) -> str:
    """Transliterate to ASCII and keep only letters of ALPHABET: `Strauß` -> `Strauss`, `Иванов` -> `Ivanov`, and
    `Васильев` -> `Vasiliev`, as the data set writes soft signs. Whitespace becomes single spaces; symbols that would
    be spelt out are dropped first (`Hinton😀` is `Hinton`, `©` nothing), while `O´Neil` keeps its apostrophe."""
    if _NORMAL.fullmatch(text):  # most names as typed: 100,000 made-up names in 0.02 s instead of 0.18 s
        return text
    return _transliterate(text)


def _transliterate(text: str) -> str:
    if not text.isascii():
        text = "".join(c for c in text if not _spelt_out(c))
    text = _SOFT_SIGN_BEFORE_VOWEL.sub("и", text)
    ascii_text = anyascii(re.sub("[ьЬъЪ]", "", text))
    ascii_text = "".join(" " if c.isspace() else c for c in ascii_text)
    return _SPACES.sub(" ", _NOT_ALLOWED.sub("", ascii_text)).strip()


def _spelt_out(c: str) -> bool:
    """A symbol, number or control character that transliteration writes with letters or digits (`😀` ->
    `:grinning:`, `Ⅻ` -> `XII`): not part of a name."""
    return unicodedata.category(c)[0] in "SNC" and any(ch.isalnum() for ch in anyascii(c))


def fold(name: str) -> str:
    """What the classifier reads: one letter case, so `HINTON`, `hinton` and `Hinton` are one name."""
    return name.lower()


def limits() -> dict:
    """The limits above, as the server sends them to the page."""
    return {"name_length": MAX_NAME_LENGTH, "top": DEFAULT_TOP, "samples": MAX_SAMPLES,
            "default_samples": DEFAULT_SAMPLES, "temperature": list(TEMPERATURE_RANGE), "seed": list(SEED_RANGE),
            "top_k": list(TOP_K_RANGE), "beam": MAX_BEAM, "max_length": list(MAX_LENGTH_RANGE),
            "prefix_length": DEFAULT_MAX_LENGTH}


def usable_name(text: str) -> str:
    """The normalised form of a name typed by a user; DataError if it is too long or has no letters."""
    if len(text) > MAX_NAME_LENGTH:
        raise DataError(f"names are at most {MAX_NAME_LENGTH} characters, not {len(text):,}")
    name = normalise(text)
    if not any(c.isalpha() for c in name):
        raise DataError(f"{text!r} has no letters that can be read (after converting to ASCII)")
    return name


def find_language(languages: list[str], text: str) -> int:
    """Index of a language named in any letter case; DataError listing the known ones if none matches."""
    for index, language in enumerate(languages):
        if language.lower() == text.strip().lower():
            return index
    raise UnknownLanguage(f"unknown language {text!r}; known languages: {', '.join(languages)}")


def start_letters(text: str) -> list[str]:
    """Capitalised start letters, as the data set writes names; DataError for anything but A-Z."""
    bad = [c for c in text if c not in string.ascii_letters]
    if bad:
        raise DataError(f"start letters must be A-Z, not {''.join(dict.fromkeys(bad))!r}")
    return [c.upper() for c in text]


def prefix_letters(text: str, max_length: int) -> str:
    """A prefix every invented name must begin with, folded; DataError for anything outside the alphabet."""
    bad = [c for c in text if c not in ALPHABET]
    if bad:
        raise DataError(f"a prefix takes letters A-Z and {ALPHABET[52:]!r} only, not {''.join(dict.fromkeys(bad))!r}")
    if len(text) > max_length:
        raise DataError(f"the prefix is longer than the longest name asked for ({max_length} letters)")
    return fold(text)


def split_of(name: str) -> str:
    """The split a normalised name belongs to, decided by the name alone: every language that lists it sees it in
    the same split, so no name is ever both trained on and tested on."""
    bucket = zlib.crc32(name.encode("ascii")) % 10
    return "test" if bucket == 0 else "validation" if bucket == 1 else "train"


@dataclass
class Dataset:
    """Distinct (name, label index) pairs and the sorted labels they refer to."""

    languages: list[str]
    pairs: list[tuple[str, int]]
    skipped: int = 0  # lines longer than MAX_NAME_LENGTH, left out

    def split(self, which: str) -> list[tuple[str, int]]:
        return in_split(self.pairs, which)


def in_split(pairs: list[tuple[str, int]], which: str) -> list[tuple[str, int]]:
    """The pairs whose name falls in one split: the data set's, or any other list of names."""
    if which not in ("train", "validation", "test"):
        raise ValueError(f"unknown split {which!r}")
    return [(name, label) for name, label in pairs if split_of(name) == which]


def load_dataset(data_dir: str | Path = DATA_DIR) -> Dataset:
    """Read every `<Label>.txt` in data_dir; labels sorted so indices never depend on the file system."""
    folder = Path(data_dir)
    if not folder.is_dir():
        raise DataError(f"data folder not found: {folder}")
    files = sorted(folder.glob("*.txt"))
    languages = [f.stem for f in files]
    pairs: list[tuple[str, int]] = []
    seen: set[tuple[str, int]] = set()
    skipped = 0
    for label, path in enumerate(files):
        try:
            lines = path.read_text(encoding="utf-8").split("\n")
        except UnicodeDecodeError:
            raise DataError(f"not UTF-8 text: {path}") from None
        for line in lines:
            if len(line) > MAX_NAME_LENGTH:  # no surname is that long; such a line would only cost memory
                skipped += 1
                continue
            name = normalise(line)
            if name and (name, label) not in seen:
                seen.add((name, label))
                pairs.append((name, label))
    if not pairs:
        raise DataError(f"no names found in {folder} (expected <Label>.txt files, one name per line)")
    return Dataset(languages, pairs, skipped)


def load_training_data(data_dir: str | Path = DATA_DIR) -> tuple[Dataset, list[tuple[str, int]]]:
    """The data set and the real names for its languages; DataError if there are too few names to train on."""
    dataset = load_dataset(data_dir)
    if not dataset.split("train") or not dataset.split("validation"):
        raise DataError(f"{data_dir} has too few names to split into training and validation")
    return dataset, load_real_names(dataset)


def pad_batch(names: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Letter indices padded with 0 to the longest name, and each name's length: one tensor from one flat list, as a
    tensor per name costs more than the names themselves."""
    lengths = torch.tensor([len(name) for name in names], dtype=torch.long)
    letters = torch.zeros(len(names), int(lengths.max()) if names else 0, dtype=torch.long)
    letters[torch.arange(letters.shape[1]) < lengths[:, None]] = torch.tensor(
        [LETTER_INDEX[letter] for name in names for letter in name], dtype=torch.long)
    return letters, lengths


def load_real_names(dataset: Dataset) -> list[tuple[str, int]]:
    """Real surnames from mimesis's per-locale lists (inside its wheel: nothing is fetched), normalised and labelled as
    the data set's languages; a name the data set has, in any letter case, or that two languages share is dropped."""
    try:
        import mimesis
    except ImportError:
        raise DataError("the real-name check needs mimesis: pip install -r requirements.txt") from None
    datasets = Path(mimesis.__file__).resolve().parent / "datasets"
    known = {fold(name) for name, _ in dataset.pairs}
    found: dict[str, tuple[str, set[int]]] = {}  # folded name -> (first spelling seen, languages)
    for label, language in enumerate(dataset.languages):
        for locale in REAL_NAME_LOCALES.get(language, ()):
            surnames = json.loads((datasets / locale / "person.json").read_text(encoding="utf-8"))["surnames"]
            for raw in surnames if isinstance(surnames, list) else [n for v in surnames.values() for n in v]:
                name = normalise(raw)
                if any(c.isalpha() for c in name) and fold(name) not in known:
                    found.setdefault(fold(name), (name, set()))[1].add(label)
    return [(name, labels.pop()) for name, labels in found.values() if len(labels) == 1]


Example = tuple[str, int, float]  # (name, language, weight in the loss)


def classifier_examples(dataset: Dataset, real: list[tuple[str, int]], real_weight: float) -> list[Example]:
    """The data set's training names, weight 1, and the real names of the train part at real_weight (0: none)."""
    examples = [(name, label, 1.0) for name, label in dataset.split("train")]
    return examples + [(name, label, real_weight) for name, label in in_split(real, "train") if real_weight > 0]


def generator_examples(dataset: Dataset, real: list[tuple[str, int]], real_weight: float) -> tuple[list[Example], ...]:
    """The data set's training names, weight 1, and the real names of the train part that the generator would write
    in a shape its language's data-set names use (else it learns `Ten Hensmans`), drawn from each epoch."""
    data_set = [(name, label, 1.0) for name, label in dataset.split("train")]
    if real_weight <= 0:
        return data_set, []
    casing, patterns = learn_casing(dataset), case_patterns(dataset)
    return data_set, [(name, label, real_weight) for name, label in in_split(real, "train")
                      if in_shape(fold(name), casing[dataset.languages[label]], patterns[label])]


def length_batches(lengths: list[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Indices in batches of similar length, in random order: little padding, still shuffled."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], rng.random()))
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    rng.shuffle(batches)
    return batches


def draw_share(examples: list[Example], share: float, rng: random.Random) -> list[Example]:
    """Each example with probability share, its weight divided by share: all in expectation, at a share of the cost."""
    if share >= 1:
        return list(examples)
    return [(name, label, weight / share) for name, label, weight in examples if rng.random() < share]


def class_weights(examples: list[Example], data_set_labels: list[int], n_labels: int) -> torch.Tensor:
    """Per-language loss weights: each language's total weight is the square root of its data-set count, so small
    languages count without giving up much accuracy on the large ones. Real names are left out of the count: 7,000
    Dutch ones teach what Dutch looks like, not that most names are Dutch."""
    labels = torch.tensor([label for _, label, _ in examples], dtype=torch.long)
    example_weights = torch.tensor([weight for _, _, weight in examples], dtype=torch.double)
    weighted = torch.zeros(n_labels, dtype=torch.double).index_add_(0, labels, example_weights)
    data_set = torch.bincount(torch.tensor(data_set_labels, dtype=torch.long), minlength=n_labels).double()
    weights = data_set.clamp(min=1) ** 0.5 / weighted.clamp(min=1e-3)
    return (weights / (weights * weighted).sum() * weighted.sum()).float()


def case_pattern(name: str) -> str:
    """Each letter as X (upper) or x (lower), other characters kept: `O'Neil` -> `X'Xxxx`."""
    return "".join("X" if c.isupper() else "x" if c.islower() else c for c in name)


def case_patterns(dataset: Dataset) -> list[set[str]]:
    """Per language index, the capitalisation patterns of its data-set names: the shapes a generated name may take."""
    patterns: list[set[str]] = [set() for _ in dataset.languages]
    for name, label in dataset.pairs:
        patterns[label].add(case_pattern(name))
    return patterns


def in_shape(folded: str, capital_after: str, patterns: set[str]) -> bool:
    """Whether a folded name, written as the data set writes its language, takes a pattern of that language's."""
    return case_pattern(write_as_data_set(folded, capital_after)) in patterns


def learn_casing(dataset: Dataset) -> dict[str, str]:
    """Per language, the characters after which the data set mostly writes a capital: `'` in Irish (O'Neil). Folded
    names are written back with capitals there and first only (`De la fontaine`, `Mccabe`)."""
    votes: dict[tuple[int, str], list[int]] = {}
    for name, label in dataset.pairs:
        for before, after in zip(name, name[1:]):
            if not before.isalpha() and after.isalpha():
                votes.setdefault((label, before), [0, 0])[after.isupper()] += 1
    return {language: "".join(sorted(c for (label, c), (lower, upper) in votes.items()
                                      if label == index and upper > lower))
            for index, language in enumerate(dataset.languages)}


def learn_lengths(dataset: Dataset) -> dict[str, list[int]]:
    """Per language, the lengths of its shortest and longest data-set names: the generator writes none shorter or
    longer (no one-letter Korean `S`, no Scottish `Stilliamson`)."""
    lengths: dict[str, list[int]] = {}
    for name, label in dataset.pairs:
        shortest, longest = lengths.setdefault(dataset.languages[label], [len(name), len(name)])
        lengths[dataset.languages[label]] = [min(shortest, len(name)), max(longest, len(name))]
    return lengths


def write_as_data_set(folded: str, capital_after: str) -> str:
    """A folded name written as the data set writes its language: see learn_casing."""
    letters = list(folded)
    for i, letter in enumerate(letters):
        if i == 0 or letters[i - 1] in capital_after:
            letters[i] = letter.upper()
    return "".join(letters)


def write_file(path: Path, content: bytes) -> None:
    """Write to a temporary file beside path, then rename it over path: a crash or a full disk never leaves half a
    file, and the old one stays until the new one is whole. DataError, in one line, if it cannot be written."""
    temporary = None
    try:
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(content)
        os.replace(temporary, path)
    except OSError as error:
        raise DataError(f"cannot write {path}: {error.strerror or error}") from None
    finally:
        if temporary and os.path.exists(temporary):
            os.unlink(temporary)
