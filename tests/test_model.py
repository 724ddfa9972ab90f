
import pytest
import torch

from data import ALPHABET, pad_batch
from model import (EOS, N_TOKENS, SOS, CheckpointError, Classifier, Generator, build, classify,
                   generator_batch, invent, load_checkpoint, sample, save_checkpoint, top_languages)

NAMES = ["Li", "Hinton", "Abramovich-Smith", "O'Neil", "Nakamura", "Xu", "de la Cruz"]


@pytest.mark.parametrize("cell", ["gru", "rnn"])
def test_a_name_scores_the_same_alone_and_in_a_padded_batch(cell):
    torch.manual_seed(0)
    model = Classifier(len(ALPHABET), 18, hidden_size=24, cell=cell).eval()
    batched = model(*pad_batch(NAMES))
    for i, name in enumerate(NAMES):
        alone = model(*pad_batch([name]))[0]
        torch.testing.assert_close(alone, batched[i], atol=1e-5, rtol=0)
    # classify() sorts by length and splits into batches; the answers stay in input order
    torch.testing.assert_close(classify(model, NAMES, batch_size=3), batched, atol=1e-5, rtol=0)
    assert torch.allclose(batched.exp().sum(1), torch.ones(len(NAMES)), atol=1e-5)


def test_the_classifier_reads_the_whole_name_in_both_directions():
    torch.manual_seed(0)
    model = Classifier(len(ALPHABET), 5, hidden_size=16).eval()
    base, first_changed, last_changed = classify(model, ["Abcdefgh", "Xbcdefgh", "Abcdefgx"])
    assert not torch.allclose(base, first_changed) and not torch.allclose(base, last_changed)


def test_generator_batch_targets():
    inputs, targets = generator_batch(["Ab", "Abc"])
    a, b, c = (ALPHABET.index(x) for x in "Abc")
    assert inputs.tolist() == [[SOS, a, b, 0], [SOS, a, b, c]]
    assert targets.tolist() == [[a, b, EOS, -100], [a, b, c, EOS]]


def test_teacher_forcing_matches_step_by_step():
    torch.manual_seed(0)
    model = Generator(N_TOKENS, 4, hidden_size=16).eval()
    inputs, _ = generator_batch(["Hinton", "Li"])
    language = torch.tensor([1, 3])
    whole = model(language, inputs)
    h = model.initial_state(2)
    for t in range(inputs.shape[1]):
        step, h = model.step(language, inputs[:, t], h)
        torch.testing.assert_close(step, whole[:, t], atol=1e-5, rtol=0)


def make_generator():
    torch.manual_seed(0)
    return Generator(N_TOKENS, 4, hidden_size=16).eval()


def test_sampling_is_deterministic_with_a_seed_and_respects_start_and_length():
    model = make_generator()
    starts = ["R", "U", "S", None, None]
    first = sample(model, 2, starts, 1.0, max_length=7, rng=torch.Generator().manual_seed(5))
    again = sample(model, 2, starts, 1.0, max_length=7, rng=torch.Generator().manual_seed(5))
    assert first == again
    for (name, _), start in zip(first, starts):
        assert 1 <= len(name) <= 7
        assert start is None or name.startswith(start)
        assert all(c in ALPHABET for c in name)
    assert invent(model, 0, ["R", "R"], 1.0, seed=3) == invent(model, 0, ["R", "R"], 1.0, seed=3)


def test_invent_avoids_repeats_unless_greedy():
    model = make_generator()
    names = invent(model, 1, ["R"] * 4, 1.5, seed=0)
    assert len(set(names)) == 4 and all(n.startswith("R") for n in names)
    greedy = invent(model, 1, ["R"] * 3, 1.0, greedy=True)
    assert len(set(greedy)) == 1


def test_top_languages_best_first():
    log_probs = torch.log_softmax(torch.tensor([[0.0, 2.0, 1.0]]), dim=1)
    result = top_languages(log_probs, ["a", "b", "c"], 2)[0]
    assert [language for _, language in result] == ["b", "c"]
    assert result[0][0] == pytest.approx(float(log_probs[0, 1]), abs=1e-4)
    assert len(top_languages(log_probs, ["a", "b", "c"], 10)[0]) == 3


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    args = {"n_letters": len(ALPHABET), "n_languages": 3, "hidden_size": 8, "cell": "gru", "dropout": 0.1}
    model = Classifier(**args).eval()
    path = tmp_path / "c.pt"
    save_checkpoint({"kind": "classifier", "model_args": args, "state_dict": model.state_dict(),
                     "languages": ["a", "b", "c"], "metrics": {"test": {"accuracy": 0.5}}}, path)
    checkpoint = torch.load(path, weights_only=True)  # plain tensors and metadata only
    assert checkpoint["languages"] == ["a", "b", "c"]
    rebuilt = build(load_checkpoint(path, "classifier"))
    torch.testing.assert_close(classify(rebuilt, NAMES), classify(model, NAMES))
    with pytest.raises(CheckpointError, match="not a generator"):
        load_checkpoint(path, "generator")


def test_a_failed_save_keeps_the_old_checkpoint(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint({"kind": "classifier", "value": torch.ones(2)}, path)
    before = path.read_bytes()
    with pytest.raises(Exception):
        save_checkpoint({"kind": "classifier", "value": lambda: None}, path)  # cannot be pickled
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_unreadable_or_missing_checkpoint_is_one_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="python train.py"):
        load_checkpoint(tmp_path / "none.pt", "classifier")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint(tmp_path / "bad.pt", "classifier")
