"""Hand-built character RNNs: a surname classifier and a conditional surname generator.

How this differs from the PyTorch tutorials it follows:
- Letters arrive as indices, never one-hot vectors: a one-hot vector times a weight
  matrix is one row of that matrix, so every input projection is an `nn.Embedding`.
- Whole padded batches run one time step at a time; a name's state stops changing
  after its last letter, so a name scores the same alone or in any batch.
- A GRU cell beside the tutorial's tanh cell, both built from `nn.Linear`.
- The classifier reads names in both directions, in one letter case, and divides its
  logits by a temperature fitted on validation names so its probabilities are honest.
  Beside the RNN it has a table of scores for hashed letter n-grams, added to its logits:
  what naive Bayes knows of `-ov` and `van `, learnt jointly with the RNN. After training,
  its answer is mixed with what each language's counted letter histories (below) make
  of the name, as a Bayes classifier with no prior would read them.
- Where a C compiler is at hand, the cells' element-wise steps run as one compiled loop
  (`fused.py`), forwards and backwards; `plain_torch()` runs everything the tutorials' way.
- The generator has start and end tokens, so it picks first letters and ends names itself,
  and its dropout keeps one mask for all of a name's letters while training. After
  training, its next-letter probabilities are mixed with those of counted letter
  histories (an n-gram model, `LetterCounts`): the two make different mistakes, and the
  mixture's held-out NLL is lower than either's.
"""
from __future__ import annotations

import contextlib
import math
import os
import tempfile
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

import fused
from data import ALPHABET, LETTER_INDEX, encode, fold, pad_batch, write_as_data_set

CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoints"
CLASSIFIER_PATH = CHECKPOINT_DIR / "classifier.pt"
GENERATOR_PATH = CHECKPOINT_DIR / "generator.pt"
EOS = len(ALPHABET)  # generator token that ends a name
SOS = len(ALPHABET) + 1  # generator token that starts one, so the model can pick the first letter
N_TOKENS = len(ALPHABET) + 2
CAPITALS = [LETTER_INDEX[c] for c in ALPHABET if c.isupper()]


class CheckpointError(Exception):
    """A checkpoint that is missing or unusable, worth one line to the user."""


def save_checkpoint(checkpoint: dict, path: str | Path) -> None:
    """Write to a temporary file beside path, then rename: a crash never leaves half a checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(checkpoint, f)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


# What each kind of checkpoint must hold, and of what type, to be used at all.
CHECKPOINT_FIELDS = {
    "classifier": {"model_args": dict, "state_dict": dict, "alphabet": str, "languages": list,
                   "sure_threshold": float},
    "generator": {"model_args": dict, "state_dict": dict, "alphabet": str, "languages": list,
                  "temperature": float, "top_k": int, "casing": dict, "lengths": dict, "known_names": list},
}


def load_checkpoint(path: str | Path, kind: str) -> dict:
    """A checkpoint dict of the given kind ("classifier" or "generator"), loaded weights-only.

    Anything this code could not use (another kind, a missing field, another alphabet)
    is a CheckpointError, never a traceback later on.
    """
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


def build(checkpoint: dict) -> nn.Module:
    """The model a checkpoint describes, with its weights, ready for inference."""
    model_type = {"classifier": Classifier, "generator": Generator}[checkpoint["kind"]]
    try:
        model = model_type(**checkpoint["model_args"])
        model.load_state_dict(checkpoint["state_dict"])
    except (TypeError, ValueError, KeyError, RuntimeError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"the {checkpoint['kind']} checkpoint does not fit this code ({reason[:120]}): "
                              "run `python train.py` again") from None
    if getattr(model, "n_languages", len(checkpoint["languages"])) != len(checkpoint["languages"]):
        raise CheckpointError(f"the {checkpoint['kind']} checkpoint's language list does not match its weights: "
                              "run `python train.py` again")
    return model.eval()


def load_model(path: str | Path, kind: str) -> tuple[nn.Module, dict]:
    """The model at path, rebuilt, and its checkpoint: what every script and the server start with."""
    checkpoint = load_checkpoint(path, kind)
    return build(checkpoint), checkpoint


OPTIMISED = [True]  # see `plain_torch`


@contextlib.contextmanager
def plain_torch():
    """Inside this block the models run as the tutorials write them, a torch operation at a time: cells step by
    step (no `fused` loop) and the n-gram table through a plain lookup. Bench's baseline and the tests' reference."""
    OPTIMISED[0] = False
    try:
        yield
    finally:
        OPTIMISED[0] = True


class Cell(nn.Module):
    """What both cells share: a step, and a whole padded batch of names run step by step."""

    input_width = 1  # input projections the cell needs, in units of hidden_size
    kind = ""  # its name in `fused`

    def sequence(self, inputs: torch.Tensor, h: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """The state after each step (B, T, H), from inputs (B, T, W*H) and the first state h (B, H).

        With lengths (B,), a name's state stops changing after its last letter. The compiled
        loop of `fused` where it can run, else the same maths step by step in torch.
        """
        if OPTIMISED[0] and fused.available(inputs, h, self.h2h.weight, self.h2h.bias):
            return self._compiled(inputs, h, lengths)
        return self.steps(inputs, h, lengths, inputs.shape[1] if lengths is None else int(lengths.min()))

    def read(self, rows: nn.Embedding, letters: torch.Tensor, h: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """`sequence` of the input projections rows(letters), letters (B, T): how a classifier reads names.

        Without gradients the compiled loop looks each row up as it reads it, never writing
        the (B, T, W*H) projections out: they cost prediction a third of the network's time.
        """
        table = rows.weight
        if (OPTIMISED[0] and fused.available(table, h, self.h2h.weight, self.h2h.bias)
                and not (torch.is_grad_enabled() and table.requires_grad)):
            return self._compiled(table, h, lengths, letters)
        return self.sequence(rows(letters), h, lengths)

    def _compiled(self, inputs: torch.Tensor, h: torch.Tensor, lengths: torch.Tensor | None,
                  letters: torch.Tensor | None = None) -> torch.Tensor:
        """`fused`'s loop over inputs (B, T, W*H), or with letters (B, T) over those rows of a table inputs."""
        steps = inputs.shape[1] if letters is None else letters.shape[1]
        shortest = steps if lengths is None else int(lengths.min())
        live = None if shortest >= steps else (torch.arange(steps)[:, None] < lengths).to(torch.uint8)  # (T, B)
        arguments = (self.kind, inputs, h, self.h2h.weight, self.h2h.bias, live, shortest)
        if letters is None and torch.is_grad_enabled():
            return fused.Sequence.apply(*arguments)
        return fused.run(*arguments, fused.product_dtype(), rows=letters)[0].transpose(0, 1)

    def steps(self, inputs: torch.Tensor, h: torch.Tensor, lengths: torch.Tensor | None,
              shortest: int) -> torch.Tensor:
        """`sequence` one torch step at a time: the reference the compiled loop is tested against."""
        states = []
        for t, step in enumerate(inputs.unbind(1)):  # once, not inputs[:, t]: backward would zero-fill per step
            h = self(step, h) if t < shortest else self(step, h, (t < lengths)[:, None])
            states.append(h)
        return torch.stack(states, dim=1) if states else inputs.new_empty(inputs.shape[0], 0, h.shape[1])


class RNNCell(Cell):
    """The tutorial's cell: the new state is tanh of the input plus a linear map of the old state.

    Cheap, but gradients fade over long names.
    """

    kind = "rnn"

    def __init__(self, hidden_size: int):
        super().__init__()
        self.h2h = nn.Linear(hidden_size, hidden_size)

    def forward(self, x: torch.Tensor, h: torch.Tensor, live: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, H) the input's projection, h (B, H); rows where live (B, 1) is False keep h."""
        new = torch.tanh(x + self.h2h(h))
        return new if live is None else torch.where(live, new, h)


class GRUCell(Cell):
    """A gated cell: reset and update gates decide how much of the old state to keep.

    Gating lets information from a name's first letters survive to its last.
    """

    input_width = 3
    kind = "gru"

    def __init__(self, hidden_size: int):
        super().__init__()
        self.h2h = nn.Linear(hidden_size, 3 * hidden_size)

    def forward(self, x: torch.Tensor, h: torch.Tensor, live: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, 3H) the input's projections for the reset, update and candidate parts; h (B, H).

        Rows where live (B, 1) is False keep h: names that have ended.
        """
        x_r, x_z, x_n = x.chunk(3, dim=-1)
        h_r, h_z, h_n = self.h2h(h).chunk(3, dim=-1)
        reset = torch.sigmoid(x_r + h_r)
        update = torch.sigmoid(x_z + h_z)
        candidate = torch.tanh(x_n + reset * h_n)
        new = candidate + update * (h - candidate)
        return new if live is None else torch.where(live, new, h)


CELLS = {"rnn": RNNCell, "gru": GRUCell}


def reverse_padded(letters: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Each row's real letters in reverse order, padding left where it was."""
    steps = torch.arange(letters.shape[1])
    index = (lengths[:, None] - 1 - steps).clamp(min=0)
    return letters.gather(1, index)


def mixture(network: torch.Tensor, counted: torch.Tensor, share: float) -> torch.Tensor:
    """log((1 - share) p + share q) from log p and log q: a network's answer and the letter counts', in log space."""
    return torch.logaddexp(network + math.log1p(-share), counted + math.log(share))


class LetterCounts(nn.Module):
    """Which token followed each of the last few tokens, per language: a counted n-gram model.

    Interpolated absolute discounting: a history's counts, less a discount, plus the mass
    discounted spread as the next shorter history predicts, down to a uniform guess. The
    (history, next token, language) triples seen in training are stored as sorted keys,
    and beside them each (history, language)'s total weight and discounted mass.
    """

    def __init__(self, n_tokens: int, n_languages: int, order: int, discount: float):
        super().__init__()
        assert n_tokens < 64, "keys give each token a base-64 digit"
        self.n_tokens, self.n_languages, self.order, self.discount = n_tokens, n_languages, order, discount
        self.register_buffer("keys", torch.zeros(0, dtype=torch.long))  # sorted (history, next, language) triples
        self.register_buffer("weights", torch.zeros(0))  # the summed weight of each triple's examples
        self.register_buffer("history_keys", torch.zeros(0, dtype=torch.long))  # sorted (history, language) pairs
        self.register_buffer("history_totals", torch.zeros(0))
        self.register_buffer("history_masses", torch.zeros(0))  # what the discount took from each history's counts
        self.rows = None  # see `_index_by_language`

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name, buffer in self._buffers.items():  # as many counts as the checkpoint holds
            if prefix + name in state_dict:
                self._buffers[name] = buffer.new_empty(state_dict[prefix + name].shape)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self.rows = None  # built when first needed: the generator never needs them

    def contexts(self, tokens: torch.Tensor) -> torch.Tensor:
        """For each position of tokens (B, T), the order - 1 tokens up to it, -1 before the start: (B, T, order - 1)."""
        width = self.order - 1
        padded = F.pad(tokens, (width, 0), value=-1)
        return padded.unfold(1, width, 1)[:, 1:] if width else tokens.new_empty(*tokens.shape, 0)

    def _histories(self, contexts: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A key for the last `length` tokens of each context (...), distinct per length, and whether
        the context has that many. With the next token t and a language, `(key * 64 + t + 1) * L + language`
        keys a triple: a history's languages sit side by side in the sorted keys."""
        recent = contexts[..., contexts.shape[-1] - length:]
        key = torch.full(contexts.shape[:-1], length)
        for column in recent.unbind(-1):
            key = key * 64 + column + 1
        return key, (recent >= 0).all(-1)

    @staticmethod
    def _exact(keys: torch.Tensor, values: torch.Tensor, wanted: torch.Tensor) -> torch.Tensor:
        """values at wanted's place among the sorted keys, 0 where wanted is not a key."""
        if not len(keys):
            return torch.zeros(wanted.shape)
        at = torch.searchsorted(keys, wanted).clamp(max=len(keys) - 1)
        return torch.where(keys[at] == wanted, values[at], 0.0)

    def _index_by_language(self) -> None:
        """Rows of every language's values side by side, one per language-free key, for `log_likelihoods`:
        one search per key then finds all languages at once (a search per language cost 18 times as much)."""
        self.rows = []
        for keys, values in ((self.keys, [self.weights]), (self.history_keys, [self.history_totals,
                                                                                 self.history_masses])):
            free, row = (keys // self.n_languages).unique(return_inverse=True)
            table = torch.zeros(len(free), len(values), self.n_languages)
            for k, value in enumerate(values):
                table[row, k, keys % self.n_languages] = value
            self.rows.append((free, table))

    @staticmethod
    def _find_rows(index: tuple[torch.Tensor, torch.Tensor], wanted: torch.Tensor) -> torch.Tensor:
        """The rows (..., values, L) of language-free keys wanted (...), zeros where a key is absent."""
        free, table = index
        if not len(free):
            return torch.zeros(*wanted.shape, *table.shape[1:])
        at = torch.searchsorted(free, wanted).clamp(max=len(free) - 1)
        return table[at] * (free[at] == wanted)[..., None, None]

    def forward(self, language: torch.Tensor, contexts: torch.Tensor) -> torch.Tensor:
        """Next-token probabilities (..., N) for languages (...) after contexts (..., order - 1)."""
        if OPTIMISED[0] and fused.LIBRARY is not None and language.dtype == contexts.dtype == torch.long:
            rows = language.numel()
            probs = fused.next_token_probabilities(language.reshape(rows), contexts.reshape(rows, self.order - 1),
                                                   self.keys, self.weights, self.n_tokens, self.n_languages,
                                                   self.order, SOS, self.discount)
            return probs.reshape(*language.shape, self.n_tokens)
        probs = torch.full((*language.shape, self.n_tokens), 1.0 / (self.n_tokens - 1))
        probs[..., SOS] = 0  # a name never starts again
        for length in range(self.order):
            history, present = self._histories(contexts, length)
            wanted = ((history[..., None] * 64 + torch.arange(self.n_tokens) + 1) * self.n_languages
                      + language[..., None])
            counts = self._exact(self.keys, self.weights, wanted)
            total = counts.sum(-1, keepdim=True)
            taken = self.discount * counts.clamp(max=1)  # less than a whole discount for light examples
            longer = (counts - taken + taken.sum(-1, keepdim=True) * probs) / total.clamp(min=1e-12)
            probs = torch.where(present[..., None] & (total > 0), longer, probs)
        return probs

    def log_likelihoods(self, tokens: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Each name's log-likelihood in every language, (B, languages), from teacher-forcing tokens and
        targets (B, T): what the classifier mixes in. Only the targets' probabilities are looked up."""
        if self.rows is None:
            self._index_by_language()
        if OPTIMISED[0] and fused.LIBRARY is not None and tokens.dtype == targets.dtype == torch.long:
            return fused.log_likelihoods(tokens, targets, *self.rows, self.n_tokens, self.order, self.discount)
        contexts = self.contexts(tokens)
        probs = torch.full((*tokens.shape, self.n_languages), 1.0 / (self.n_tokens - 1))
        for length in range(self.order):  # from no history up to the longest
            history, present = self._histories(contexts, length)
            count = self._find_rows(self.rows[0], history * 64 + targets.clamp(min=0) + 1)[..., 0, :]
            total, mass = self._find_rows(self.rows[1], history).unbind(-2)
            longer = (count - self.discount * count.clamp(max=1) + mass * probs) / total.clamp(min=1e-12)
            probs = torch.where(present[..., None] & (total > 0), longer, probs)
        return (probs.log() * (targets >= 0)[..., None]).sum(1)

    def fill(self, language: torch.Tensor, tokens: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor) -> None:
        """Count teacher-forcing inputs: languages (B,), tokens and targets (B, T), -100 past a name's end,
        and each name's weight (B,)."""
        contexts = self.contexts(tokens)
        language = language[:, None].expand_as(tokens)
        keys, weights = [], []
        for length in range(self.order):
            history, present = self._histories(contexts, length)
            counted = present & (targets >= 0)
            keys.append(((history * 64 + targets + 1) * self.n_languages + language)[counted])
            weights.append(weight[:, None].expand_as(tokens)[counted])
        self.keys, inverse = torch.cat(keys).unique(return_inverse=True)  # sorted
        self.weights = torch.zeros(len(self.keys)).index_add_(0, inverse, torch.cat(weights).float())
        languages = self.n_languages
        self.history_keys, inverse = (self.keys // (64 * languages) * languages + self.keys % languages).unique(
            return_inverse=True)
        self.history_totals = torch.zeros(len(self.history_keys)).index_add_(0, inverse, self.weights)
        self.history_masses = torch.zeros(len(self.history_keys)).index_add_(
            0, inverse, self.discount * self.weights.clamp(max=1))
        self.rows = None


class SummedRows(torch.autograd.Function):
    """The sum of each name's n-gram rows, weight[ids].sum(1), with a cheaper backward for a large table.

    Adam and clipping read a dense gradient, but a batch touches only a few thousand of
    the table's rows. Rather than zero-filling a million scores per step, the gradient is
    written into a buffer kept on the embedding, clearing only the rows the last step wrote.
    """

    @staticmethod
    def forward(ctx, weight: torch.Tensor, ids: torch.Tensor, table: nn.Embedding) -> torch.Tensor:
        ctx.save_for_backward(ids)
        ctx.table = table
        return F.embedding(ids, weight, table.padding_idx).sum(1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (ids,) = ctx.saved_tensors
        table = ctx.table
        weight = table.weight
        rows = ids.flatten()
        per_row = grad[:, None].expand(*ids.shape, grad.shape[1]).reshape(len(rows), -1)
        buffer = getattr(table, "gradient_buffer", None)
        if weight.grad is None:  # a new step: reuse the buffer, clearing what the last step wrote
            if buffer is None:
                buffer = table.gradient_buffer = torch.zeros_like(weight)
            elif table.written is None:
                buffer.zero_()
            else:
                buffer.index_fill_(0, table.written, 0)
            weight.grad, table.written = buffer, rows
        elif weight.grad is buffer:  # gradients accumulated over several backward passes: clear it all next time
            table.written = None
        weight.grad.index_add_(0, rows, per_row)
        weight.grad[table.padding_idx] = 0
        return None, None, None


class Classifier(nn.Module):
    """Reads a name letter by letter and scores every language from the final state.

    Bidirectional: one cell reads the name forwards, one backwards, so both its
    beginning and its ending weigh in. Returns log-probabilities (B, languages).
    """

    def __init__(self, n_letters: int, n_languages: int, hidden_size: int = 128,
                 cell: str = "gru", bidirectional: bool = True, dropout: float = 0.5,
                 letter_dropout: float = 0.1, ngram_buckets: int = 0, count_order: int = 5,
                 count_discount: float = 0.6):
        super().__init__()
        self.counts = LetterCounts(n_letters + 2, n_languages, count_order, count_discount)
        # The counts' share of the answer, the temperature of their log-likelihoods and the mixture's:
        # 0, 1 and 1 while training, then chosen on validation names.
        self.register_buffer("counts_share", torch.tensor(0.0))
        self.register_buffer("counts_temperature", torch.tensor(1.0))
        self.register_buffer("mixture_temperature", torch.tensor(1.0))
        self.ngram_buckets = ngram_buckets
        directions = 2 if bidirectional else 1
        self.n_languages = n_languages
        self.letter_dropout = letter_dropout
        cell_type = CELLS[cell]
        self.hidden_size = hidden_size
        width = cell_type.input_width * hidden_size
        # A row per letter, drawn as nn.Embedding draws them, and a last row of zeros that letter dropout reads
        # in place of a hidden letter: the projections need no mask multiplied in, forwards or backwards.
        self.input_rows = nn.ModuleList(
            nn.Embedding(n_letters + 1, width, padding_idx=n_letters,
                         _weight=torch.cat((torch.randn(n_letters, width), torch.zeros(1, width))))
            for _ in range(directions))
        self.cells = nn.ModuleList(cell_type(hidden_size) for _ in range(directions))
        self.dropout = nn.Dropout(dropout)
        self.h2o = nn.Linear(directions * hidden_size, n_languages)
        if ngram_buckets:  # a score per language for each hashed letter n-gram, added to the RNN's logits
            self.ngram_rows = nn.Embedding(ngram_buckets + 1, n_languages, padding_idx=ngram_buckets)
            nn.init.zeros_(self.ngram_rows.weight)  # start from the RNN alone; N(0, 1) rows would drown it
        # Divides the logits; 1 while training, then fitted on validation names (calibration).
        self.register_buffer("temperature", torch.tensor(1.0))

    def encode(self, names: list[str]) -> tuple[torch.Tensor, ...]:
        """What the classifier reads of normalised names: folded to one letter case, padded.

        (letters (B, T), lengths (B,)), and with n-grams on, their bucket ids (B, G).
        """
        folded = [fold(name) for name in names]
        letters, lengths = pad_batch(folded)
        if not self.ngram_buckets:
            return letters, lengths
        return letters, lengths, ngram_ids(letters, lengths, self.ngram_buckets)

    def forward(self, letters: torch.Tensor, lengths: torch.Tensor,
                grams: torch.Tensor | None = None) -> torch.Tensor:
        logits = self.h2o(self.dropout(self.state(letters, lengths)))  # (B, directions*H) -> (B, languages)
        if grams is not None:  # grams (B, G) bucket ids
            if self.training and self.letter_dropout:  # hide whole n-grams too
                grams = grams.masked_fill(torch.rand(grams.shape) < self.letter_dropout, self.ngram_buckets)
            if OPTIMISED[0]:
                logits = logits + SummedRows.apply(self.ngram_rows.weight, grams, self.ngram_rows)  # (B, languages)
            else:
                logits = logits + self.ngram_rows(grams).sum(1)
        log_probs = F.log_softmax(logits / self.temperature, dim=1)
        if not float(self.counts_share):  # while training, and without counts
            return log_probs
        return self.mix(log_probs, self.counts.log_likelihoods(*teacher_forcing(letters, lengths)))

    def mix(self, log_probs: torch.Tensor, likelihoods: torch.Tensor) -> torch.Tensor:
        """The network's log-probabilities (B, languages) mixed with what each language's letter counts make
        of the names, their log-likelihoods (B, languages) read as Bayes would with no prior."""
        share = float(self.counts_share)
        if not share:
            return log_probs
        counted = F.log_softmax(likelihoods / self.counts_temperature, dim=1)
        mixed = mixture(log_probs, counted, share)
        return F.log_softmax(mixed / self.mixture_temperature, dim=1)  # a share chosen for accuracy, then honest

    def state(self, letters: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Each name's final states, both directions side by side: (B, directions*H)."""
        # letters (B, T) indices, lengths (B,); H = hidden_size, W = the cell's input_width
        finals = []
        if self.training and self.letter_dropout:  # hide whole letters, so no single one is leaned on
            hidden = torch.rand(letters.shape) < self.letter_dropout  # (B, T)
            letters = letters.masked_fill(hidden, self.input_rows[0].padding_idx)  # whose projections are 0
        for direction, (rows, cell) in enumerate(zip(self.input_rows, self.cells)):
            read = reverse_padded(letters, lengths) if direction == 1 else letters
            h = rows.weight.new_zeros(letters.shape[0], self.hidden_size)  # (B, H)
            states = cell.read(rows, read, h, lengths)
            finals.append(states[:, -1] if states.shape[1] else h)  # an empty name keeps the first state
        return torch.cat(finals, dim=1)


class Generator(nn.Module):
    """Predicts a name's next letter from its language, the current letter and the state.

    As in the tutorial, a second layer reads the new state beside a first guess made
    from the input and old state, with dropout there while training.
    """

    def __init__(self, n_tokens: int, n_languages: int, hidden_size: int = 640,
                 cell: str = "gru", dropout: float = 0.5, count_order: int = 6, count_discount: float = 0.6):
        super().__init__()
        cell_type = CELLS[cell]
        self.counts = LetterCounts(n_tokens, n_languages, count_order, count_discount)
        # Share of the counts' probabilities in the mixture: 0 while training, then fitted on validation names.
        self.register_buffer("counts_share", torch.tensor(0.0))
        self.n_languages = n_languages
        self.hidden_size = hidden_size
        self.letter_rows = nn.Embedding(n_tokens, cell_type.input_width * hidden_size)
        self.language_rows = nn.Embedding(n_languages, cell_type.input_width * hidden_size)
        self.cell = cell_type(hidden_size)
        self.i2o_letter = nn.Embedding(n_tokens, n_tokens)
        self.i2o_language = nn.Embedding(n_languages, n_tokens)
        self.i2o_hidden = nn.Linear(hidden_size, n_tokens)
        self.dropout = nn.Dropout(dropout)
        self.o2o = nn.Linear(hidden_size + n_tokens, n_tokens)

    def step(self, language: torch.Tensor, history: torch.Tensor,
             h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One letter for a batch: (next-token log-probabilities, new state).

        history (B, L) holds the tokens so far, the start token first: the RNN reads the
        last, the counts look at the last few.
        """
        token = history[:, -1]
        first_guess = self.i2o_letter(token) + self.i2o_language(language) + self.i2o_hidden(h)
        h = self.cell(self.letter_rows(token) + self.language_rows(language), h)
        logits = self.o2o(self.dropout(torch.cat((h, first_guess), dim=1)))
        log_probs = F.log_softmax(logits, dim=1)
        if float(self.counts_share):
            log_probs = self.mix(log_probs, language, self.counts.contexts(history)[:, -1])
        return log_probs, h

    def forward(self, language: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: log-probabilities of every next token, (B, T, n_tokens)."""
        # language (B,), tokens (B, T); H = hidden_size, W = the cell's input_width, N = n_tokens
        inputs = self.letter_rows(tokens) + self.language_rows(language)[:, None]  # (B, T, W*H)
        first_guess = (self.i2o_letter(tokens) + self.i2o_language(language)[:, None])  # (B, T, N)
        h = inputs.new_zeros(tokens.shape[0], self.hidden_size)  # (B, H)
        states_t = self.cell.sequence(inputs, h)  # (B, T, H): the state after each token
        previous = torch.cat((h[:, None], states_t[:, :-1]), dim=1)  # (B, T, H): the state before it
        first_guess = first_guess + self.i2o_hidden(previous)
        both = torch.cat((states_t, first_guess), dim=2)  # (B, T, H + N)
        if self.training:  # one dropout mask per name, the same at every letter: 8% cheaper steps, same NLL
            both = both * self.dropout(both.new_ones(both.shape[0], 1, both.shape[2]))
        log_probs = F.log_softmax(self.o2o(both), dim=2)  # (B, T, N)
        if float(self.counts_share):
            log_probs = self.mix(log_probs, language[:, None].expand_as(tokens), self.counts.contexts(tokens))
        return log_probs

    def mix(self, log_probs: torch.Tensor, language: torch.Tensor, contexts: torch.Tensor) -> torch.Tensor:
        """The RNN's log-probabilities (..., N) mixed with the counts' for the same contexts (..., K), in log space."""
        return mixture(log_probs, self.counts(language, contexts).log(), float(self.counts_share))

    def initial_state(self, batch: int) -> torch.Tensor:
        return torch.zeros(batch, self.hidden_size)


def ngram_ids(letters: torch.Tensor, lengths: torch.Tensor, buckets: int) -> torch.Tensor:
    """Hashed ids of every name's 1- to 4-letter pieces, start and end marked (`^h`, `ton$`): (B, G).

    Each piece is a number in base 64 of its letter codes (unique per piece), spread
    over the buckets by a multiplicative hash; pieces that run past a name's end get
    the padding id `buckets`. Computed for the whole batch at once: hashing strings in
    Python, piece by piece, cost more than the model itself.
    """
    if OPTIMISED[0] and fused.LIBRARY is not None and letters.dtype == lengths.dtype == torch.long:
        return fused.ngram_ids(letters, lengths, buckets, len(ALPHABET) + 1, len(ALPHABET) + 2)
    batch, width = letters.shape
    codes = torch.zeros(batch, width + 2, dtype=torch.long)  # 0 past the end
    codes[:, 0] = len(ALPHABET) + 1  # start mark
    codes[:, 1:width + 1] = torch.where(torch.arange(width) < lengths[:, None], letters + 1, 0)
    codes[torch.arange(batch), lengths + 1] = len(ALPHABET) + 2  # end mark
    pieces = []
    for n in range(1, min(4, width + 2) + 1):
        windows = codes.unfold(1, n, 1)  # (B, width + 3 - n, n)
        value = (windows * 64 ** torch.arange(n)).sum(-1)
        spread = (value * 2654435761) % 2**32 * buckets >> 32  # Knuth's multiplicative hash, high bits
        fits = torch.arange(windows.shape[1]) + n <= lengths[:, None] + 2
        pieces.append(torch.where(fits, spread, buckets))
    return torch.cat(pieces, dim=1)


@torch.no_grad()
def classify(model: Classifier, names: list[str], batch_size: int = 2048) -> torch.Tensor:
    """Log-probabilities for normalised names, in input order.

    Names are batched by length so that little time goes on padding.
    """
    return _by_length(names, batch_size, model.n_languages, lambda chunk: model(*model.encode(chunk)))


@torch.no_grad()
def final_states(model: Classifier, names: list[str], batch_size: int = 2048) -> torch.Tensor:
    """The classifier's final state for each normalised name, in input order: what "like" compares."""
    width = model.h2o.in_features
    return _by_length(names, batch_size, width, lambda chunk: model.state(*model.encode(chunk)[:2]))


def _by_length(names: list[str], batch_size: int, width: int, run) -> torch.Tensor:
    order = sorted(range(len(names)), key=lambda i: len(names[i]))
    result = torch.empty(len(names), width)
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        result[chunk] = run([names[i] for i in chunk])
    return result


def generator_batch(names: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher-forcing inputs (start token, folded letters) and targets (folded letters, end token).

    The generator learns folded names, so it never puts a capital inside a word;
    `data.write_as_data_set` writes its names back as the data set writes them.
    Targets past a name's end are -100, which the loss ignores.
    """
    return teacher_forcing(*pad_batch([fold(name) for name in names]))


def teacher_forcing(letters: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded letters (B, T) and lengths (B,) as inputs (start token, letters) and targets (letters, end token)."""
    batch = len(letters)
    inputs = torch.cat((torch.full((batch, 1), SOS), letters), dim=1)
    targets = torch.cat((letters, torch.zeros(batch, 1, dtype=torch.long)), dim=1)
    targets[torch.arange(batch), lengths] = EOS
    targets[torch.arange(targets.shape[1]) > lengths[:, None]] = -100
    return inputs, targets


def _next_log_probs(model: Generator, language: torch.Tensor, history: torch.Tensor, h: torch.Tensor,
                    letters_so_far: int, min_length: int, max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One generation step's log-probabilities and state, with what no name may do ruled out.

    The start token and capitals never come, a name has at least min_length letters
    (and at least one), and a name of max_length letters can only end.
    """
    log_probs, h = model.step(language, history, h)
    log_probs[:, SOS] = -math.inf
    log_probs[:, CAPITALS] = -math.inf  # it learnt folded names: capitals are written afterwards
    if letters_so_far < min(max(min_length, 1), max_length):
        log_probs[:, EOS] = -math.inf
    if letters_so_far >= max_length:
        log_probs[:, :EOS] = -math.inf
    return log_probs, h


@torch.no_grad()
def sample(model: Generator, language: int, prefixes: list[str], temperature: float = 1.0, top_k: int = 0,
           max_length: int = 20, rng: torch.Generator | None = None, min_length: int = 1) -> list[tuple[str, bool]]:
    """One folded name per prefix, drawn together: (name, ended with the end token).

    A prefix ("" for none) is fed to the model letter by letter and every name
    continues from the state it leaves. top_k > 0 draws only among the k likeliest
    next tokens. A name that has not ended after max_length letters is cut there;
    none ends before min_length letters.
    """
    batch = len(prefixes)
    language_t = torch.full((batch,), language, dtype=torch.long)
    history = torch.full((batch, 1), SOS, dtype=torch.long)  # (B, L): the tokens so far
    h = model.initial_state(batch)
    width = max(map(len, prefixes), default=0)
    forced = torch.full((batch, width), -1, dtype=torch.long)  # (B, P): prefix letters, -1 where free
    for row, prefix in enumerate(prefixes):
        forced[row, :len(prefix)] = torch.tensor(encode(fold(prefix)), dtype=torch.long)
    letters = []
    done = torch.zeros(batch, dtype=torch.bool)
    for position in range(max_length + 1):  # the last step can only end the name
        log_probs, h = _next_log_probs(model, language_t, history, h, position, min_length, max_length)
        logits = log_probs / temperature
        if top_k:
            logits = logits.masked_fill(logits < logits.topk(top_k, dim=1).values[:, -1:], -math.inf)
        token = torch.multinomial(torch.softmax(logits, dim=1), 1, generator=rng)[:, 0]
        if position < width:
            token = torch.where(forced[:, position] >= 0, forced[:, position], token)
        done |= token == EOS
        if position == max_length or bool(done.all()):
            break
        letters.append(torch.where(done, -1, token))
        history = torch.cat((history, token[:, None]), dim=1)
    columns = torch.stack(letters, dim=1).tolist() if letters else [[] for _ in prefixes]
    return [("".join(ALPHABET[i] for i in row if i >= 0), bool(e)) for row, e in zip(columns, done)]


@torch.no_grad()
def beam_search(model: Generator, language: int, prefix: str, width: int, max_length: int = 20,
                min_length: int = 1) -> list[tuple[str, float]]:
    """The `width` likeliest whole folded names that begin with prefix, best first, with their log-probability.

    The log-probability (nats) is that of everything the model chose: the letters after
    the prefix and the end token. The greedy name (a beam of one) is always among the
    candidates, so the best name found is never less likely than greedy decoding's.
    """
    prefix = fold(prefix)
    found: dict[str, float] = {}
    for beam in dict.fromkeys((1, width)):
        found.update(_beam(model, language, prefix, beam, min_length, max_length))
    return sorted(found.items(), key=lambda item: -item[1])[:width]


def _beam(model: Generator, language: int, prefix: str, width: int, min_length: int,
          max_length: int) -> dict[str, float]:
    h = model.initial_state(1)
    history = torch.tensor([[SOS]])  # (A, L): each beam's tokens so far
    for letter in prefix:  # the prefix sets the state; its own letters are given, not scored
        _, h = model.step(torch.tensor([language]), history, h)
        history = torch.cat((history, torch.tensor([[LETTER_INDEX[letter]]])), dim=1)
    alive, scores = [prefix], torch.zeros(1)
    finished: dict[str, float] = {}
    while alive:
        log_probs, h = _next_log_probs(model, torch.full((len(alive),), language), history, h, len(alive[0]),
                                       min_length, max_length)
        totals = scores[:, None] + log_probs  # (A, N)
        values, flat = totals.flatten().topk(min(2 * width, totals.numel()))
        keep, next_scores, next_tokens = [], [], []
        for value, index in zip(values.tolist(), flat.tolist()):
            row, next_token = divmod(index, totals.shape[1])
            if value == -math.inf:
                break
            if next_token == EOS:
                finished.setdefault(alive[row], value)
            elif len(keep) < width:
                keep.append((row, alive[row] + ALPHABET[next_token]))
                next_scores.append(value)
                next_tokens.append(next_token)
        best_finished = sorted(finished.values(), reverse=True)[:width]
        if not keep or (len(best_finished) == width and best_finished[-1] >= max(next_scores)):
            break  # every longer name is less likely than the names already found
        rows = torch.tensor([row for row, _ in keep])
        h, history = h[rows], torch.cat((history[rows], torch.tensor(next_tokens)[:, None]), dim=1)
        alive, scores = [name for _, name in keep], torch.tensor(next_scores)
    return finished


def invent(model: Generator, language: int, prefixes: list[str], temperature: float, capital_after: str = "",
           top_k: int = 0, max_length: int = 20, seed: int | None = None, avoid: set[str] | None = None,
           min_length: int = 1, candidates: int = 16, rounds: int = 4) -> list[str]:
    """One new name per prefix, written as the data set writes the language, repeats avoided where possible.

    Draws a few candidates per prefix in one batch and takes the first one not already
    chosen, preferring names that ended before max_length; none ends before min_length
    letters (the language's shortest data-set name). With avoid (folded names, e.g. the
    training data) a name must not be in it: up to `rounds` batches are drawn, and a
    prefix that still has no such name gets none, so fewer names come back.
    """
    rng = torch.Generator()
    rng.manual_seed(seed) if seed is not None else rng.seed()
    chosen: list[str | None] = [None] * len(prefixes)
    for _ in range(rounds if avoid is not None else 1):
        missing = [i for i, name in enumerate(chosen) if name is None]
        if not missing:
            break
        drawn = sample(model, language, [prefixes[i] for i in missing for _ in range(candidates)], temperature,
                       top_k, max_length, rng, min_length)
        for k, i in enumerate(missing):
            options = [(name, ended) for name, ended in drawn[k * candidates:(k + 1) * candidates]
                       if avoid is None or name not in avoid]
            fresh = [name for name, ended in options if name not in chosen and ended]
            fresh = fresh or [name for name, _ in options if name not in chosen]
            if avoid is None:
                fresh = fresh or [drawn[k * candidates][0]]  # the model leaves no other choice
            chosen[i] = fresh[0] if fresh else None
    return [write_as_data_set(name, capital_after) for name in chosen if name is not None]
