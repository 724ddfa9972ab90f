"""Counted letter histories: an n-gram model of names, per language, beside the networks.

Read one way it predicts a name's next letter (the generator mixes it in); read the other
way it scores a whole name in every language, which with a prior is the naive Bayes
baseline and without one is what the classifier mixes in. One class does both.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class LetterCounts(nn.Module):
    """Which token followed each of the last `order - 1` tokens, per language, at the examples' weights.

    Interpolated absolute discounting: a history's counts, less a discount, plus the mass
    discounted spread as the next shorter history predicts, down to a uniform guess over all
    tokens but the last (the start token). Stored as sorted (history, next token, language)
    keys with their weights: a checkpoint holds only what was seen."""

    def __init__(self, n_tokens: int, n_languages: int, order: int, discount: float):
        super().__init__()
        assert n_tokens < 64, "keys give each token a base-64 digit"
        self.n_tokens, self.n_languages, self.order, self.discount = n_tokens, n_languages, order, discount
        self.register_buffer("keys", torch.zeros(0, dtype=torch.long))
        self.register_buffer("weights", torch.zeros(0))
        self.rows: tuple[torch.Tensor, ...] | None = None  # see `_index`

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name in ("keys", "weights"):  # as many counts as the checkpoint holds
            if prefix + name in state_dict:
                self._buffers[name] = self._buffers[name].new_empty(state_dict[prefix + name].shape)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self.rows = None

    def contexts(self, tokens: torch.Tensor) -> torch.Tensor:
        """For each position of tokens (B, T), the order - 1 tokens up to it, -1 before the start: (B, T, order - 1)."""
        width = self.order - 1
        padded = F.pad(tokens, (width, 0), value=-1)
        return padded.unfold(1, width, 1)[:, 1:] if width else tokens.new_empty(*tokens.shape, 0)

    @staticmethod
    def _history(contexts: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A key for the last `length` tokens of each context (...), distinct per length, and whether it has them."""
        recent = contexts[..., contexts.shape[-1] - length:]
        key = torch.full(contexts.shape[:-1], length, device=contexts.device)
        for column in recent.unbind(-1):
            key = key * 64 + column + 1
        return key, (recent >= 0).all(-1)

    def fill(self, language: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor) -> None:
        """Count teacher-forcing batches: languages (B,), inputs and targets (B, T), -100 past a name's end, and each
        name's weight (B,)."""
        contexts = self.contexts(inputs)
        keys, weights = [], []
        for length in range(self.order):
            history, present = self._history(contexts, length)
            counted = present & (targets >= 0)
            keys.append(((history * 64 + targets + 1) * self.n_languages + language[:, None])[counted])
            weights.append(weight[:, None].expand_as(targets)[counted])
        self.keys, inverse = torch.cat(keys).unique(return_inverse=True)
        self.weights = torch.zeros(len(self.keys), device=self.keys.device).index_add_(
            0, inverse, torch.cat(weights).float())
        self.rows = None

    def _index(self) -> tuple[torch.Tensor, ...]:
        """Every language's counts side by side, one row per (history, next token) and one per history (its total
        and the mass its discounts freed): one search finds a key's row, and the language picks the column."""
        if self.rows is None or self.rows[0].device != self.keys.device:
            languages = self.n_languages
            next_keys, row = (self.keys // languages).unique(return_inverse=True)
            counts = torch.zeros(len(next_keys), languages, device=self.keys.device)
            counts[row, self.keys % languages] = self.weights
            history_keys, row = (next_keys // 64).unique(return_inverse=True)
            totals = counts.new_zeros(len(history_keys), languages, 2)
            totals.index_add_(0, row, torch.stack((counts, self.discount * counts.clamp(max=1)), -1))
            self.rows = (next_keys, counts, history_keys, totals)
        return self.rows

    @staticmethod
    def _find(keys: torch.Tensor, rows: torch.Tensor, wanted: torch.Tensor,
              language: torch.Tensor | None) -> torch.Tensor:
        """The rows of wanted keys (...), zeros where a key was never seen: every language's side by side, or only
        language's (which broadcasts with wanted)."""
        if not len(keys):  # nothing counted: one row of zeros under a key no history has
            keys, rows = wanted.new_full((1,), -1), rows.new_zeros(1, *rows.shape[1:])
        at = torch.searchsorted(keys, wanted).clamp(max=len(keys) - 1)
        found = keys[at] == wanted
        picked = rows[at] if language is None else rows[at, language]
        return picked * found.reshape(*found.shape, *[1] * (picked.dim() - found.dim()))

    def probabilities(self, contexts: torch.Tensor, targets: torch.Tensor,
                      language: torch.Tensor | None = None) -> torch.Tensor:
        """P(target | context) for contexts (..., order - 1) and targets (...) that broadcast together: in every
        language, (..., languages), as the classifier asks, or in the language each is asked in, as a generator asks."""
        next_keys, counts, history_keys, totals = self._index()
        wide = language is None  # every language side by side, in a last dimension
        probs = torch.where(targets == self.n_tokens - 1, 0.0, 1.0 / (self.n_tokens - 1))  # uniform but the start
        probs = probs[..., None] if wide else probs
        for length in range(self.order):  # from no history up to the longest
            history, present = self._history(contexts, length)
            count = self._find(next_keys, counts, history * 64 + targets + 1, language)
            total, mass = self._find(history_keys, totals, history, language).unbind(-1)
            longer = (count - self.discount * count.clamp(max=1) + mass * probs) / total.clamp(min=1e-12)
            probs = torch.where((present[..., None] if wide else present) & (total > 0), longer, probs)
        return probs

    def forward(self, language: torch.Tensor, contexts: torch.Tensor) -> torch.Tensor:
        """Next-token probabilities (..., n_tokens) in languages (...) after contexts (..., order - 1)."""
        tokens = torch.arange(self.n_tokens, device=contexts.device)
        return self.probabilities(contexts[..., None, :], tokens, language[..., None])

    def log_likelihoods(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Each name's log-likelihood in every language, (B, languages), from teacher-forcing inputs and targets."""
        probs = self.probabilities(self.contexts(inputs), targets.clamp(min=0))
        return (probs.log() * (targets >= 0)[..., None]).sum(1)
