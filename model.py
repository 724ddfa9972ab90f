"""Hand-built character RNNs: a surname classifier and a conditional surname generator.

Rung 0 is the tutorials' own RNN: `TutorialCell`, `hidden = i2h(cat(input, hidden))`, with
no nonlinearity. `Classifier(cell="tutorial", directions=1, one_case=False, dropout=0,
letter_dropout=0)` is the classification tutorial's network and `Generator(cell="tutorial")`
the generation tutorial's, batched. Every default beyond them is a rung of docs/ladder.md,
which says what it buys. Two changes hold on every rung:
- Letters arrive as indices, never one-hot vectors: a one-hot vector times a weight
  matrix is one row of that matrix, so every input projection is an `nn.Embedding`.
- Whole padded batches run one time step at a time, on any device; a name's answer is
  read at its own last letter, so it scores the same alone or in any batch.
"""
from __future__ import annotations

import argparse
import heapq
import inspect
import io
import math
import re
import tempfile
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from counts import LetterCounts
from data import ALPHABET, LETTER_INDEX, DataError, fold, pad_batch, write_as_data_set, write_file

CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoints"
CLASSIFIER_PATH = CHECKPOINT_DIR / "classifier.pt"
GENERATOR_PATH = CHECKPOINT_DIR / "generator.pt"
EOS = len(ALPHABET)  # generator token that ends a name
SOS = len(ALPHABET) + 1  # generator token that starts one, so the model can pick the first letter
N_TOKENS = len(ALPHABET) + 2
CAPITALS = [LETTER_INDEX[c] for c in ALPHABET if c.isupper()]


# ----------------------------------------------------------------------------- the cells

class TutorialCell(nn.Module):
    """The tutorials' cell: the new state is a linear map of the input and the old state, no nonlinearity.

    `i2h(cat(input, hidden))` is `i2h_input(input) + h2h(hidden)`: the input's part arrives as x."""

    input_width = 1  # input projections the cell needs, in units of hidden_size

    def __init__(self, hidden_size: int):
        super().__init__()
        self.h2h = nn.Linear(hidden_size, hidden_size)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """x (B, H) the input's projection, h (B, H) the old state."""
        return x + self.h2h(h)


class RNNCell(TutorialCell):
    """The tutorials' cell with a tanh around it: a bounded state, so that long names cannot blow it up.

    Cheap, but gradients fade over long names."""

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return torch.tanh(super().forward(x, h))


class GRUCell(nn.Module):
    """A gated cell: reset and update gates decide how much of the old state to keep.

    Gating lets information from a name's first letters survive to its last.
    """

    input_width = 3

    def __init__(self, hidden_size: int):
        super().__init__()
        self.h2h = nn.Linear(hidden_size, 3 * hidden_size)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """x (B, 3H) the input's projections for the reset, update and candidate parts; h (B, H)."""
        hidden = h.shape[-1]
        x_gates, x_candidate = x.split(2 * hidden, dim=-1)  # split, not slices: one kernel in backward
        h_gates, h_candidate = self.h2h(h).split(2 * hidden, dim=-1)
        reset, update = torch.sigmoid(x_gates + h_gates).chunk(2, dim=-1)
        candidate = torch.tanh(x_candidate + reset * h_candidate)
        return candidate + update * (h - candidate)


CELLS = {"tutorial": TutorialCell, "rnn": RNNCell, "gru": GRUCell}


def unroll(cell: nn.Module, inputs: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """The state after each step (B, T, H), from input projections (B, T, W*H) and the first state h (B, H)."""
    states = []
    for x in inputs.unbind(1):  # once, not inputs[:, t]: backward would zero-fill a copy per step
        h = cell(x, h)
        states.append(h)
    return torch.stack(states, dim=1) if states else inputs.new_empty(inputs.shape[0], 0, h.shape[1])


def mixture(network: torch.Tensor, counted: torch.Tensor, share: float) -> torch.Tensor:
    """log((1 - share) p + share q) from log p and log q: a network's answer and the letter counts', in log space."""
    return torch.logaddexp(network + math.log1p(-share), counted + math.log(share))


# ----------------------------------------------------------------------------- classifier

class Classifier(nn.Module):
    """Reads a name letter by letter and gives log-probabilities (B, languages) from its last state, as the
    classification tutorial's RNN does. With directions=2 a second cell reads it backwards, so that its beginning
    weighs as much as its ending; one_case reads every name in lower case."""

    def __init__(self, n_letters: int, n_languages: int, hidden_size: int = 128, cell: str = "gru",
                 directions: int = 2, one_case: bool = True, dropout: float = 0.5, letter_dropout: float = 0.1,
                 count_order: int = 5, count_discount: float = 0.6):
        super().__init__()
        cell_type = CELLS[cell]
        self.n_letters, self.n_languages, self.hidden_size = n_letters, n_languages, hidden_size
        self.one_case, self.letter_dropout = one_case, letter_dropout
        # i2h: a row of input projections per letter, and a last row of zeros that a hidden letter reads
        self.i2h = nn.ModuleList(nn.Embedding(n_letters + 1, cell_type.input_width * hidden_size,
                                              padding_idx=n_letters) for _ in range(directions))
        self.cells = nn.ModuleList(cell_type(hidden_size) for _ in range(directions))
        self.dropout = nn.Dropout(dropout)
        self.h2o = nn.Linear(directions * hidden_size, n_languages)
        self.counts = LetterCounts(n_letters + 2, n_languages, count_order, count_discount)
        # Fitted on validation names after training (evaluate.calibrate_classifier); 1, 0, 1, 1 while training.
        self.register_buffer("temperature", torch.tensor(1.0))  # divides the network's logits
        self.register_buffer("counts_share", torch.tensor(0.0))  # the letter counts' share of the answer
        self.register_buffer("counts_temperature", torch.tensor(1.0))  # divides the counts' log-likelihoods
        self.register_buffer("mixture_temperature", torch.tensor(1.0))  # divides the mixture's log-probabilities

    def reads(self, name: str) -> str:
        """A normalised name as this classifier reads it: names that read alike get the same answer."""
        return fold(name) if self.one_case else name

    def encode(self, names: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """What the classifier reads of normalised names, on its device: letters (B, T) padded, and lengths (B,)."""
        letters, lengths = pad_batch([self.reads(name) for name in names])
        return letters.to(self.h2o.weight.device), lengths.to(self.h2o.weight.device)

    def forward(self, letters: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        logits = self.h2o(self.dropout(self.state(letters, lengths)))  # (B, directions * H) -> (B, languages)
        log_probs = F.log_softmax(logits / self.temperature, dim=1)
        if not float(self.counts_share):  # while training, and without counts
            return log_probs
        return self.mix(log_probs, self.counts.log_likelihoods(*teacher_forcing(letters, lengths)))

    def mix(self, log_probs: torch.Tensor, likelihoods: torch.Tensor) -> torch.Tensor:
        """The network's log-probabilities (B, languages) mixed with what each language's letter counts make of the
        names, their log-likelihoods (B, languages) read as Bayes would with no prior, then calibrated again."""
        share = float(self.counts_share)
        if not share:
            return log_probs
        counted = F.log_softmax(likelihoods / float(self.counts_temperature), dim=1)
        return F.log_softmax(mixture(log_probs, counted, share) / float(self.mixture_temperature), dim=1)

    def state(self, letters: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Each name's final states, the directions side by side: (B, directions * H)."""
        if self.training and self.letter_dropout:  # hide whole letters, so that no single one is leaned on
            hidden = torch.rand(letters.shape, device=letters.device) < self.letter_dropout
            letters = letters.masked_fill(hidden, self.n_letters)  # the row of zeros
        last = (lengths - 1).clamp(min=0)[:, None, None].expand(-1, 1, self.hidden_size)
        finals = []
        for direction, (i2h, cell) in enumerate(zip(self.i2h, self.cells)):
            read = reverse_padded(letters, lengths) if direction else letters
            h = i2h.weight.new_zeros(letters.shape[0], self.hidden_size)
            states = unroll(cell, i2h(read), h)  # (B, T, H)
            final = states.gather(1, last)[:, 0] if states.shape[1] else h
            finals.append(torch.where(lengths[:, None] > 0, final, h))  # an empty name keeps the first state
        return torch.cat(finals, dim=1)


def reverse_padded(letters: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Each row's real letters in reverse order, padding right where it was."""
    steps = torch.arange(letters.shape[1], device=letters.device)
    return letters.gather(1, (lengths[:, None] - 1 - steps).clamp(min=0))


@torch.no_grad()
def classify(model: Classifier, names: list[str], batch_size: int = 2048) -> torch.Tensor:
    """Log-probabilities (on the CPU) for normalised names, in input order, batched by length to save padding."""
    return _by_length(names, batch_size, model.n_languages, lambda chunk: model(*model.encode(chunk)))


@torch.no_grad()
def final_states(model: Classifier, names: list[str], batch_size: int = 2048) -> torch.Tensor:
    """The classifier's final state for each normalised name, in input order: what "like" compares."""
    return _by_length(names, batch_size, model.h2o.in_features, lambda chunk: model.state(*model.encode(chunk)))


def _by_length(names: list[str], batch_size: int, width: int, run) -> torch.Tensor:
    order = sorted(range(len(names)), key=lambda i: len(names[i]))
    result = torch.empty(len(names), width)
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        result[chunk] = run([names[i] for i in chunk]).float().cpu()
    return result


# ----------------------------------------------------------------------------- generator

class Generator(nn.Module):
    """Predicts a name's next letter from its language, the current letter and the state. As in the tutorial, a
    second layer (o2o) reads the new state beside a first guess (i2o), with dropout there while training."""

    def __init__(self, n_tokens: int, n_languages: int, hidden_size: int = 384, cell: str = "gru",
                 dropout: float = 0.3, count_order: int = 6, count_discount: float = 0.6):
        super().__init__()
        cell_type = CELLS[cell]
        self.n_languages, self.hidden_size = n_languages, hidden_size
        width = cell_type.input_width * hidden_size
        self.i2h_letter = nn.Embedding(n_tokens, width)
        self.i2h_language = nn.Embedding(n_languages, width)
        self.cell = cell_type(hidden_size)
        self.i2o_letter = nn.Embedding(n_tokens, n_tokens)
        self.i2o_language = nn.Embedding(n_languages, n_tokens)
        self.i2o_hidden = nn.Linear(hidden_size, n_tokens)
        self.dropout = nn.Dropout(dropout)
        self.o2o = nn.Linear(hidden_size + n_tokens, n_tokens)
        self.counts = LetterCounts(n_tokens, n_languages, count_order, count_discount)
        # The counts' share of the next-token probabilities: 0 while training, then fitted on validation names.
        self.register_buffer("counts_share", torch.tensor(0.0))

    def forward(self, language: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: log-probabilities of every next token, (B, T, n_tokens)."""
        # language (B,), tokens (B, T); H = hidden_size, W = the cell's input_width, N = n_tokens
        inputs = self.i2h_letter(tokens) + self.i2h_language(language)[:, None]  # (B, T, W*H)
        h = inputs.new_zeros(tokens.shape[0], self.hidden_size)
        states = unroll(self.cell, inputs, h)  # (B, T, H): the state after each token
        previous = torch.cat((h[:, None], states[:, :-1]), dim=1)  # the state before it
        first_guess = self.i2o_letter(tokens) + self.i2o_language(language)[:, None] + self.i2o_hidden(previous)
        both = torch.cat((states, first_guess), dim=2)  # (B, T, H + N)
        if self.training:  # one dropout mask per name, the same at every letter
            both = both * self.dropout(both.new_ones(both.shape[0], 1, both.shape[2]))
        log_probs = F.log_softmax(self.o2o(both), dim=2)
        if float(self.counts_share):
            log_probs = self.mix(log_probs, language[:, None].expand_as(tokens), self.counts.contexts(tokens))
        return log_probs

    def step(self, language: torch.Tensor, history: torch.Tensor,
             h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One letter for a batch: (next-token log-probabilities, new state). history (B, L) holds the tokens so far,
        the start token first: the RNN reads the last, the counts the last few."""
        token = history[:, -1]
        first_guess = self.i2o_letter(token) + self.i2o_language(language) + self.i2o_hidden(h)
        h = self.cell(self.i2h_letter(token) + self.i2h_language(language), h)
        log_probs = F.log_softmax(self.o2o(self.dropout(torch.cat((h, first_guess), dim=1))), dim=1)
        if float(self.counts_share):
            log_probs = self.mix(log_probs, language, self.counts.contexts(history)[:, -1])
        return log_probs, h

    def mix(self, log_probs: torch.Tensor, language: torch.Tensor, contexts: torch.Tensor) -> torch.Tensor:
        """The RNN's log-probabilities (..., N) mixed with the counts' for the same contexts (..., K), in log space."""
        return mixture(log_probs, self.counts(language, contexts).log(), float(self.counts_share))

    def initial_state(self, batch: int) -> torch.Tensor:
        return self.o2o.weight.new_zeros(batch, self.hidden_size)


def generator_batch(names: list[str], device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher-forcing inputs (start token, folded letters) and targets (folded letters, end token; -100 past the
    end, which the loss ignores). Folded: `data.write_as_data_set` writes names back as the data set writes them."""
    inputs, targets = teacher_forcing(*pad_batch([fold(name) for name in names]))
    return inputs.to(device), targets.to(device)


def teacher_forcing(letters: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded letters (B, T) and lengths (B,) as inputs (start token, letters) and targets (letters, end token)."""
    batch, device = len(letters), letters.device
    inputs = torch.cat((torch.full((batch, 1), SOS, device=device), letters), dim=1)
    targets = torch.cat((letters, torch.zeros(batch, 1, dtype=torch.long, device=device)), dim=1)
    targets[torch.arange(batch, device=device), lengths] = EOS
    targets[torch.arange(targets.shape[1], device=device) > lengths[:, None]] = -100
    return inputs, targets


def _next_log_probs(model: Generator, language: torch.Tensor, history: torch.Tensor, h: torch.Tensor,
                    position: int | torch.Tensor, min_length: torch.Tensor,
                    max_length: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One generation step's log-probabilities (on the CPU) and state, with what no name may do ruled out: the start
    token and capitals, an end before min_length letters (or none), anything but an end after max_length. position
    (letters so far) and the lengths: one for all rows, or one each."""
    log_probs, h = model.step(language, history, h)
    log_probs = log_probs.float().cpu()
    log_probs[:, [SOS, *CAPITALS]] = -math.inf  # it learnt folded names: capitals are written afterwards
    log_probs[:, EOS].masked_fill_(position < torch.minimum(min_length.clamp(min=1), max_length), -math.inf)
    log_probs[:, :EOS].masked_fill_((position >= max_length).reshape(-1, 1), -math.inf)
    return log_probs, h


@torch.no_grad()
def sample(model: Generator, language: int | torch.Tensor, prefixes: list[str], temperature: float = 1.0,
           top_k: int = 0, max_length: int | torch.Tensor = 20, rng: torch.Generator | None = None,
           min_length: int | torch.Tensor = 1) -> list[tuple[str, bool]]:
    """One folded name per prefix, drawn together: (name, ended with the end token). Each continues from the state its
    prefix ("" for none) leaves; top_k > 0 draws among the k likeliest next tokens only; names are cut at max_length
    and none ends before min_length. Language and lengths: one for all, or one per prefix, so that every language can
    share a batch. Draws are made on the CPU, so a seed gives the same names on any device, up to its rounding."""
    device, batch = device_of(model), len(prefixes)
    language, shortest, longest = (torch.as_tensor(value).expand(batch) for value in (language, min_length, max_length))
    history = torch.full((batch, 1), SOS, dtype=torch.long)  # (B, L): the tokens so far
    h = model.initial_state(batch)
    forced, given = pad_batch([fold(prefix) for prefix in prefixes])  # (B, P): prefix letters, -1 where free
    width = forced.shape[1]
    forced = forced.masked_fill(torch.arange(width) >= given[:, None], -1)
    letters = []
    done = torch.zeros(batch, dtype=torch.bool)
    last = int(longest.max()) if batch else 0  # the last step can only end the name
    for position in range(last + 1):
        live = (~done).nonzero()[:, 0]  # only the names still being written take a step
        log_probs, h[live.to(device)] = _next_log_probs(model, language[live].to(device), history[live].to(device),
                                                        h[live.to(device)], position, shortest[live], longest[live])
        logits = log_probs / temperature
        if top_k:
            logits = logits.masked_fill(logits < logits.topk(top_k, dim=1).values[:, -1:], -math.inf)
        token = torch.full((batch,), -1)
        token[live] = torch.multinomial(torch.softmax(logits, dim=1), 1, generator=rng)[:, 0]
        if position < width:
            token = torch.where(forced[:, position] >= 0, forced[:, position], token)
        done |= token == EOS
        if position == last or bool(done.all()):
            break
        letters.append(torch.where(done, -1, token))
        history = torch.cat((history, token[:, None]), dim=1)
    columns = torch.stack(letters, dim=1).tolist() if letters else [[] for _ in prefixes]
    return [("".join(ALPHABET[i] for i in row if i >= 0), bool(e)) for row, e in zip(columns, done)]


@torch.no_grad()
def beam_search(model: Generator, language: int, prefix: str, width: int, max_length: int = 20,
                min_length: int = 1, batch: int = 64, budget: int = 1024) -> list[tuple[str, float]]:
    """The `width` likeliest whole folded names that begin with prefix, best first, with the log-probability of the
    letters after the prefix and the end token. A name's log-probability only falls as letters are added, so
    expanding the likeliest open names first (up to `batch` in one step) ends names in order of likelihood: the
    first `width` to end are the likeliest of all. Where that would take more than `budget` expansions (a flat model,
    a long shortest length), only the `width` likeliest open names are kept from then on, as a beam keeps them."""
    device = device_of(model)
    tokens = [SOS] + [LETTER_INDEX[letter] for letter in fold(prefix)]
    h = model.initial_state(1)
    for end in range(1, len(tokens)):  # the prefix sets the state; its own letters are given, not scored
        _, h = model.step(torch.tensor([language], device=device), torch.tensor([tokens[:end]], device=device), h)
    open_names = [(0.0, 0, tokens, h[0], False)]  # a heap of (-log-probability, order of entry, tokens, state, ended)
    found: list[tuple[str, float]] = []
    entered = 1
    while open_names and len(found) < width:
        if open_names[0][4]:  # the likeliest entry has ended: nothing still open can end likelier
            score, _, ended, _, _ = heapq.heappop(open_names)
            found.append(("".join(ALPHABET[token] for token in ended[1:]), -score))
            continue
        if budget <= 0:  # a beam from here on: every ended name, and as many open ones as names are still wanted
            open_names = [entry for entry in open_names if entry[4]] + heapq.nsmallest(
                width - len(found), (entry for entry in open_names if not entry[4]))
            heapq.heapify(open_names)
        expand = []
        while open_names and not open_names[0][4] and len(expand) < batch:
            expand.append(heapq.heappop(open_names))
        budget -= len(expand)
        longest = max(len(entry[2]) for entry in expand)  # histories padded on the left with "before the start"
        history = torch.tensor([[-1] * (longest - len(entry[2])) + entry[2] for entry in expand], device=device)
        log_probs, states = _next_log_probs(model, torch.full((len(expand),), language, device=device), history,
                                            torch.stack([entry[3] for entry in expand]),
                                            torch.tensor([len(entry[2]) - 1 for entry in expand]),
                                            torch.tensor(min_length), torch.tensor(max_length))
        for (score, _, name, _, _), row, state in zip(expand, log_probs.tolist(), states):
            for token, value in enumerate(row):
                if value > -math.inf:
                    heapq.heappush(open_names, (score - value, entered, name + [token] * (token != EOS), state,
                                                token == EOS))
                    entered += 1
    return found


def invent(model: Generator, language: int | torch.Tensor, prefixes: list[str], temperature: float,
           capital_after: str | list[str] = "", top_k: int = 0, max_length: int | torch.Tensor = 20,
           seed: int | None = None, avoid: set[str] | None = None, min_length: int | torch.Tensor = 1,
           candidates: int = 4, rounds: int = 8) -> list[str | None]:
    """One name per prefix, written as the data set writes the language, repeats avoided where possible: draws
    `candidates` per prefix in one batch and takes the first not already chosen in its language, ended names first.
    With avoid (folded names, e.g. the training data) a name must not be in it: up to `rounds` batches are drawn, and
    a prefix with no such name gets None. Language, lengths and casing are one for all prefixes or one each."""
    languages, shortest, longest = (torch.as_tensor(value).expand(len(prefixes))
                                    for value in (language, min_length, max_length))
    rng = torch.Generator()
    rng.manual_seed(seed) if seed is not None else rng.seed()
    chosen: list[str | None] = [None] * len(prefixes)
    taken: set[tuple[int, str]] = set()  # (language, name) of the names chosen so far
    for _ in range(rounds if avoid is not None else 1):
        missing = [i for i, name in enumerate(chosen) if name is None]
        if not missing:
            break
        rows = torch.tensor(missing).repeat_interleave(candidates)
        drawn = sample(model, languages[rows], [prefixes[i] for i in rows], temperature, top_k, longest[rows], rng,
                       shortest[rows])
        for k, i in enumerate(missing):
            options = [(name, ended) for name, ended in drawn[k * candidates:(k + 1) * candidates]
                       if avoid is None or name not in avoid]
            fresh = [name for name, ended in options if (int(languages[i]), name) not in taken and ended]
            fresh = fresh or [name for name, _ in options if (int(languages[i]), name) not in taken]
            if avoid is None:
                fresh = fresh or [drawn[k * candidates][0]]  # the model leaves no other choice
            chosen[i] = fresh[0] if fresh else None
            taken.add((int(languages[i]), chosen[i]))
    casings = [capital_after] * len(prefixes) if isinstance(capital_after, str) else capital_after
    return [None if name is None else write_as_data_set(name, casing) for name, casing in zip(chosen, casings)]


# ----------------------------------------------------------------------------- checkpoints

class CheckpointError(Exception):
    """A checkpoint that is missing or unusable, worth one line to the user."""


# What each kind of checkpoint must hold, and of what type, to be used at all.
CHECKPOINT_FIELDS = {
    "classifier": {"model_args": dict, "state_dict": dict, "alphabet": str, "languages": list,
                   "sure_threshold": float},
    "generator": {"model_args": dict, "state_dict": dict, "alphabet": str, "languages": list,
                  "temperature": float, "top_k": int, "casing": dict, "lengths": dict, "known_names": list},
}


def make_checkpoint(kind: str, model: nn.Module, model_args: dict, languages: list[str], **fields) -> dict:
    """A plain dict of CPU tensors and metadata: what the model was built with, its weights, and fields."""
    state = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    return {"kind": kind, "model_args": model_args, "state_dict": state, "alphabet": ALPHABET,
            "languages": languages, **fields}


def writable_folder(out: Path) -> None:
    """Make sure out is a folder checkpoints can be written to, before any training time is spent; DataError if not."""
    try:
        if out.exists() and not out.is_dir():
            raise NotADirectoryError(20, "it is a file, not a folder")
        out.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=out).close()
    except OSError as error:
        raise DataError(f"cannot write checkpoints to {out}: {error.strerror or error}") from None


def save_checkpoint(checkpoint: dict, path: str | Path) -> None:
    """Serialised in memory, then written whole (`data.write_file`): a full disk is one DataError, the old file kept."""
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    write_file(Path(path), buffer.getvalue())


def load_checkpoint(path: str | Path, kind: str) -> dict:
    """A checkpoint dict of the given kind, loaded weights-only onto the CPU; what this code cannot use (another kind,
    a missing field, another alphabet) is a CheckpointError, never a traceback later on."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no {kind} checkpoint at {path}: run `python train.py` first")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(f"cannot read {path} ({type(error).__name__}): run `python train.py` again") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("kind") != kind:
        raise CheckpointError(f"{path} is not a {kind} checkpoint: run `python train.py` again")
    for field, field_type in CHECKPOINT_FIELDS[kind].items():
        if not isinstance(checkpoint.get(field), field_type):
            raise CheckpointError(f"{path} has no usable {field!r} (made by another version?): "
                                  "run `python train.py` again")
    if checkpoint["alphabet"] != ALPHABET:
        raise CheckpointError(f"{path} was trained on another alphabet than this code reads: "
                              "run `python train.py` again")
    languages = checkpoint["languages"]
    if not languages or not all(isinstance(language, str) for language in languages):
        raise CheckpointError(f"{path} has no usable language list: run `python train.py` again")
    return checkpoint


def build(checkpoint: dict, device: str | torch.device = "cpu") -> nn.Module:
    """The model a checkpoint describes, with its weights, on device, ready for inference."""
    model_type = {"classifier": Classifier, "generator": Generator}[checkpoint["kind"]]
    try:
        model = model_type(**checkpoint["model_args"])
        model.load_state_dict(checkpoint["state_dict"])
    except (TypeError, ValueError, KeyError, RuntimeError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"the {checkpoint['kind']} checkpoint does not fit this code ({reason[:120]}): "
                              "run `python train.py` again") from None
    if model.n_languages != len(checkpoint["languages"]):
        raise CheckpointError(f"the {checkpoint['kind']} checkpoint's language list does not match its weights: "
                              "run `python train.py` again")
    return model.to(device).eval()


def load_model(path: str | Path, kind: str, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """The model at path, rebuilt on device, and its checkpoint: what every script and the server start with."""
    checkpoint = load_checkpoint(path, kind)
    return build(checkpoint, device), checkpoint


def arguments_for(model_type: type, settings: dict, **fixed) -> dict:
    """The constructor arguments of model_type found in settings, and fixed ones: what a checkpoint stores."""
    return {**{key: value for key, value in settings.items() if key in inspect.signature(model_type).parameters},
            **fixed}


def device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """The --device flag every script takes."""
    parser.add_argument("--device", type=parse_device, default="auto", help="auto (CUDA, then MPS, then the CPU), "
                        "cpu, cuda, cuda:N or mps (default: auto)")


def parse_device(text: str) -> torch.device:
    """The --device flag's value; a device that is not on this machine is an argparse error: one line, exit 2."""
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    if not re.fullmatch(r"cpu|mps|cuda(:\d+)?", text):
        raise argparse.ArgumentTypeError(f"unknown device {text!r}: use auto, cpu, cuda, cuda:N or mps")
    device = torch.device(text)
    if (device.type == "mps" and not torch.backends.mps.is_available()
            or device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count()):
        raise argparse.ArgumentTypeError(f"device {text!r} is not available on this machine")
    return device
