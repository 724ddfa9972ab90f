"""Helpers the test modules share: running the scripts as a user would, and speaking HTTP."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def run(script: str, *args: str, stdin: str | None = None, timeout: float = 120,
        cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """Run one of the project's scripts as a user would (from the project's root unless cwd is given)."""
    return subprocess.run([sys.executable, str(ROOT / script), *args], cwd=cwd, input=stdin, capture_output=True,
                          text=True, timeout=timeout)


def get(server: dict, path: str, method: str = "GET", headers: dict | None = None):
    request = urllib.request.Request(server["base"] + path, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def get_json(server: dict, path: str, **kwargs):
    """(status, body) of a request whose answer must be JSON with an exact Content-Length."""
    status, headers, body = get(server, path, **kwargs)
    assert headers["Content-Type"].startswith("application/json")
    assert int(headers["Content-Length"]) == len(body)
    return status, json.loads(body)


def like_a_terminal() -> None:
    """For Popen(preexec_fn=...): Ctrl-C reaches the script as it does in a terminal.

    A job started in the background by a non-interactive shell (as CI may start this
    suite) inherits SIGINT ignored, and Python then never raises KeyboardInterrupt.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def mix_in_counts(model, names: list[str] = ("Hinton", "Li", "Ivanov", "Schmidt", "Tanaka", "O'Neil"),
                  languages: list[int] | None = None, share: float = 0.4) -> None:
    """Give a tiny classifier letter counts from a few names and mix them in, as train.py does after training."""
    import torch

    from model import generator_batch

    languages = languages or [i % model.n_languages for i in range(len(names))]
    inputs, targets = generator_batch(list(names))
    model.counts.fill(torch.tensor(languages), inputs, targets, torch.ones(len(names)))
    model.counts_share.fill_(share)
    model.counts_temperature.fill_(2.0)
    model.mixture_temperature.fill_(0.9)
