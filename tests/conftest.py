"""Shared fixtures: tiny models trained once per test session by the real train.py, and the real server."""
from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import ROOT, run


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> Path:
    """A folder with classifier.pt and generator.pt from one short training run."""
    out = tmp_path_factory.mktemp("checkpoints")
    result = run("train.py", "--epochs", "1", "--hidden-size", "32", "--out", str(out), timeout=300)
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def server(trained):
    """The real server.py on a free port, serving the tiny models, with no cache of answers."""
    process = subprocess.Popen(
        [sys.executable, "-u", "server.py", "--port", "0", "--device", "cpu",
         "--cache", "0",  # every answer from the batcher and the model, so that tests see them, not the cache
         "--quiet",  # a log nobody reads would fill the pipe
         "--classifier", str(trained / "classifier.pt"), "--generator", str(trained / "generator.pt")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    assert "serving on http://" in line, process.stderr.read()
    address = line.split("http://")[1].split("/")[0]
    yield {"base": f"http://{address}", "host": address.split(":")[0], "port": int(address.split(":")[1]),
           "process": process}
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=10)
