"""The pictures train.py writes beside its checkpoints. matplotlib is imported only here, lazily."""
from __future__ import annotations

import io
from pathlib import Path

import torch

from data import write_file


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")  # files only: no display on servers and CI
    import matplotlib.pyplot as plt
    return plt


def save(plt, fig, path: Path) -> None:
    """Drawn in memory, then written whole (`data.write_file`), so that a full disk keeps the old picture."""
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    write_file(path, buffer.getvalue())


def plot_losses(history: dict, path: Path, title: str) -> None:
    """Training and validation loss against step; both curves must be the same quantity."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(*zip(*history["train"]), label="training")
    if history["validation"]:
        ax.plot(*zip(*history["validation"]), marker="o", label="validation")
    ax.set(xlabel="step", ylabel="loss (nats)", title=title)
    ax.legend()
    save(plt, fig, path)


def plot_confusion(confusion: list[list[int]], languages: list[str], path: Path) -> None:
    plt = _pyplot()
    counts = torch.tensor(confusion, dtype=torch.double)
    rows = counts / counts.sum(1, keepdim=True).clamp(min=1)
    fig, ax = plt.subplots(figsize=(8, 7))
    image = ax.imshow(rows.numpy(), cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, label="share of the true language's test names")
    ticks = range(len(languages))
    ax.set_xticks(ticks, languages, rotation=90)
    ax.set_yticks(ticks, languages)
    ax.set(xlabel="guessed language", ylabel="true language",
           title="Classifier confusion on the test split (rows sum to 1)")
    save(plt, fig, path)


def plot_reliability(curves: dict[str, list[dict]], path: Path) -> None:
    """Accuracy against confidence per bin, one line per set of names; the diagonal is perfect calibration."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfectly calibrated")
    for label, rows in curves.items():
        filled = [row for row in rows if row["count"]]
        ax.plot([row["confidence"] for row in filled], [row["accuracy"] for row in filled], marker="o", label=label)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (top probability, bin mean)", ylabel="accuracy in the bin",
           title="Classifier reliability, calibrated")
    ax.legend(loc="upper left")
    save(plt, fig, path)
