"""The compiled recurrence (fused.py) against the same maths in plain torch."""
import json
import os
import subprocess
import sys

import pytest
import torch

import fused
from data import ALPHABET, load_dataset, pad_batch
from helpers import ROOT
from model import (N_TOKENS, Classifier, Generator, GRUCell, LetterCounts, RNNCell, generator_batch, ngram_ids,
                   plain_torch)

pytestmark = pytest.mark.skipif(fused.LIBRARY is None, reason="no C compiler: the cells run in plain torch")
LENGTHS = torch.tensor([6, 3, 1, 5, 6])


def inputs_for(cell, dtype=torch.float32):
    torch.manual_seed(0)
    inputs = torch.randn(len(LENGTHS), int(LENGTHS.max()), cell.input_width * cell.h2h.in_features, dtype=dtype)
    return inputs.requires_grad_(), torch.randn(len(LENGTHS), cell.h2h.in_features, dtype=dtype, requires_grad=True)


@pytest.mark.parametrize("cell_type", [GRUCell, RNNCell])
def test_the_fused_sequences_backward_passes_gradcheck_in_float64(cell_type):
    torch.manual_seed(0)
    cell = cell_type(4).double()
    inputs, h = inputs_for(cell, torch.float64)
    live = (torch.arange(inputs.shape[1])[:, None] < LENGTHS).to(torch.uint8)
    shortest = int(LENGTHS.min())
    assert torch.autograd.gradcheck(
        lambda x, h, weight, bias: fused.Sequence.apply(cell.kind, x, h, weight, bias, live, shortest),
        (inputs, h, cell.h2h.weight, cell.h2h.bias))


@pytest.mark.parametrize("cell_type", [GRUCell, RNNCell])
@pytest.mark.parametrize("lengths", [LENGTHS, None])
def test_the_fused_sequence_equals_the_plain_steps_in_values_and_gradients(cell_type, lengths):
    torch.manual_seed(0)
    cell = cell_type(16)
    inputs, h = inputs_for(cell)
    weights = torch.randn(len(LENGTHS), int(LENGTHS.max()), 16)  # every state gets a gradient of its own
    results = []
    for compiled in (True, False):
        with plain_torch() if not compiled else torch.enable_grad():
            states = cell.sequence(inputs, h, lengths)
        results.append((states, *torch.autograd.grad((states * weights).sum(), (inputs, h, *cell.parameters()))))
    for ours, plain in zip(*results):
        torch.testing.assert_close(ours, plain, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cell_type", [GRUCell, RNNCell])
def test_a_sequence_in_one_c_call_equals_its_loop_of_torch_products_to_the_bit(cell_type, monkeypatch):
    """Handed torch's own BLAS product, C runs the whole loop: the same products in the same order."""
    if not fused.GEMM:
        pytest.skip("torch's library exports no sgemm_ here: the loop stays in Python")
    torch.manual_seed(0)
    cell = cell_type(16)
    inputs, h = inputs_for(cell)
    weights = torch.randn(len(LENGTHS), int(LENGTHS.max()), 16)
    rows = torch.nn.Embedding(30, inputs.shape[2])
    letters = torch.randint(0, 30, (len(LENGTHS), int(LENGTHS.max())))
    results = []
    for one_call in (True, False):
        monkeypatch.setattr(fused, "GEMM", one_call)
        states = cell.sequence(inputs, h, LENGTHS)
        gradients = torch.autograd.grad((states * weights).sum(), (inputs, h, *cell.parameters()))
        with torch.no_grad():  # prediction's path: the input projections looked up as they are read
            read = cell.read(rows, letters, h, LENGTHS)
        results.append((states, *gradients, read))
    for one_call, loop in zip(*results):
        assert torch.equal(one_call, loop)


def test_the_fused_sequence_runs_its_products_in_bfloat16_inside_autocast_as_plain_torch_does():
    torch.manual_seed(0)
    cell = GRUCell(32)
    inputs, h = inputs_for(cell)
    results = []
    for compiled in (True, False):
        with torch.autocast("cpu", dtype=torch.bfloat16), (plain_torch() if not compiled else torch.enable_grad()):
            states = cell.sequence(inputs, h, LENGTHS)
        results.append((states.float(), *torch.autograd.grad(states.float().sum(), (inputs, cell.h2h.weight))))
        exact = cell.sequence(inputs, h, LENGTHS)
        assert not torch.allclose(states.float(), exact, atol=1e-4)  # the products really ran in bfloat16
    for ours, plain in zip(*results):
        torch.testing.assert_close(ours, plain, rtol=0.05, atol=0.02)


def test_models_answer_the_same_with_and_without_the_compiled_loop():
    torch.manual_seed(0)
    classifier = Classifier(len(ALPHABET), 18, hidden_size=24, ngram_buckets=64).eval()
    generator = Generator(N_TOKENS, 18, hidden_size=24).eval()
    letters, lengths, grams = classifier.encode(["Hinton", "Li", "Abramovich-Smith"])
    tokens = torch.randint(0, N_TOKENS - 1, (3, 7))
    with torch.no_grad():
        compiled = classifier(letters, lengths, grams), generator(torch.tensor([0, 5, 17]), tokens)
        with plain_torch():
            plain = classifier(letters, lengths, grams), generator(torch.tensor([0, 5, 17]), tokens)
    for ours, reference in zip(compiled, plain):
        torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)


def test_a_large_batch_split_among_threads_gives_each_name_what_it_gets_alone():
    torch.manual_seed(0)
    cell = GRUCell(64)
    inputs = torch.randn(300, 5, 3 * 64)  # 300 * 64 state units: above the size the C loop shares among threads
    lengths = torch.randint(1, 6, (300,))
    with torch.no_grad():
        together = cell.sequence(inputs, torch.zeros(300, 64), lengths)
        for row in (0, 150, 299):
            alone = cell.sequence(inputs[row:row + 1], torch.zeros(1, 64), lengths[row:row + 1])
            torch.testing.assert_close(alone[0], together[row], rtol=1e-5, atol=1e-5)


def test_without_a_c_compiler_the_scripts_give_the_same_answers_in_plain_torch(trained, tmp_path):
    names = "Hinton\nNakamura\nAbramovich-Smith\nO'Neil\nXu\n"
    command = [sys.executable, "predict.py", "--checkpoint", str(trained / "classifier.pt"), "--json", "-n", "18", "-"]
    answers = {}
    for compiler in ("gcc", str(tmp_path / "no-such-compiler")):
        environment = {**os.environ, "CC": compiler, "XDG_CACHE_HOME": str(tmp_path / "cache")}
        probe = subprocess.run([sys.executable, "-c", "import fused; print(fused.LIBRARY is None)"], cwd=ROOT,
                               env=environment, capture_output=True, text=True, check=True)
        assert probe.stdout.strip() == str(compiler != "gcc")  # built into the empty cache, or not at all
        result = subprocess.run(command, cwd=ROOT, env=environment, input=names, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        answers[compiler] = [json.loads(line) for line in result.stdout.splitlines()]
    compiled, plain = answers.values()
    for ours, reference in zip(compiled, plain):
        assert [language for _, language in ours["result"]] == [language for _, language in reference["result"]]
        torch.testing.assert_close(torch.tensor([p for p, _ in ours["result"]]),
                                   torch.tensor([p for p, _ in reference["result"]]), atol=2e-4, rtol=0)


def test_the_compiled_letter_counts_give_each_name_the_log_likelihoods_torch_gives():
    names = [name for name, _ in load_dataset().pairs[::40]]  # about 500 names of all 18 languages
    languages = [language for _, language in load_dataset().pairs[::40]]
    counts = LetterCounts(N_TOKENS, 18, 5, 0.6)
    counts.fill(torch.tensor(languages), *generator_batch(names), torch.rand(len(names)) + 0.1)
    inputs, targets = generator_batch(names[::3] + ["Qxzvy", "Hinton-Smith", "A"])  # seen, unseen, one letter
    compiled = counts.log_likelihoods(inputs, targets)
    with plain_torch():
        plain = counts.log_likelihoods(inputs, targets)
    torch.testing.assert_close(compiled, plain, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("order", [1, 3, 6])
def test_the_compiled_letter_counts_give_the_next_token_probabilities_torch_gives(order):
    pairs = load_dataset().pairs[::40]
    counts = LetterCounts(N_TOKENS, 18, order, 0.6)
    counts.fill(torch.tensor([language for _, language in pairs]), *generator_batch([name for name, _ in pairs]),
                torch.rand(len(pairs)) + 0.1)
    inputs, _ = generator_batch([name for name, _ in pairs[::5]] + ["Qxzvy", "Hinton-Smith", ""])
    languages = torch.randint(0, 18, (len(inputs), 1)).expand_as(inputs)  # some names asked in another language
    compiled = counts(languages, counts.contexts(inputs))
    with plain_torch():
        plain = counts(languages, counts.contexts(inputs))
    torch.testing.assert_close(compiled, plain, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(compiled.sum(-1), torch.ones(inputs.shape))


def test_the_compiled_ngram_ids_are_torchs():
    for names in (["Hinton", "Li", "Abramovich-Smith", "O'Neil", "X"], ["A"], ["Ab", "Xu"], [""]):
        letters, lengths = pad_batch(names)
        compiled = ngram_ids(letters, lengths, 4096)
        with plain_torch():
            assert torch.equal(compiled, ngram_ids(letters, lengths, 4096))
