import argparse
import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from answers import NearestNames, answers, explanations, log_odds
from counts import LetterCounts
from data import (ALPHABET, LETTER_INDEX, Dataset, case_pattern, learn_casing, learn_lengths, write_as_data_set)
from evaluate import generator_nll
from fitting import fit_counts_share
from helpers import mix_in_counts
from model import (EOS, N_TOKENS, SOS, CheckpointError, Classifier, Generator, GRUCell, RNNCell, TutorialCell, classify,
                   beam_search,
                   generator_batch, invent, load_checkpoint, load_model, sample, save_checkpoint, unroll,
                   device_of, make_checkpoint, parse_device)

NAMES = ["Li", "Hinton", "Abramovich-Smith", "O'Neil", "Nakamura", "Xu", "de la Cruz"]


@pytest.mark.parametrize("cell, counted", [("gru", False), ("rnn", False), ("gru", True)])
def test_a_name_scores_the_same_alone_and_in_a_padded_batch(cell, counted):
    torch.manual_seed(0)
    model = Classifier(len(ALPHABET), 18, hidden_size=24, cell=cell).eval()
    if counted:
        mix_in_counts(model)
    batched = model(*model.encode(NAMES))
    for i, name in enumerate(NAMES):
        alone = model(*model.encode([name]))[0]
        torch.testing.assert_close(alone, batched[i], atol=1e-5, rtol=0)
    # classify() sorts by length and splits into batches; the answers stay in input order
    torch.testing.assert_close(classify(model, NAMES, batch_size=3), batched, atol=1e-5, rtol=0)
    assert torch.allclose(batched.exp().sum(1), torch.ones(len(NAMES)), atol=1e-5)


def test_the_classifier_reads_the_whole_name_in_both_directions():
    """Its final state is one cell's reading of the name from the first letter and another's from the last."""
    torch.manual_seed(0)
    model = Classifier(len(ALPHABET), 5, hidden_size=16).eval()
    names = ["Abcdefgh", "Xy", "Hinton"]
    with torch.no_grad():
        states = model.state(*model.encode(names))
        for row, name in enumerate(names):
            for direction, text in ((0, name.lower()), (1, name.lower()[::-1])):
                h = torch.zeros(1, 16)
                for letter in text:
                    h = model.cells[direction](model.i2h[direction](torch.tensor([LETTER_INDEX[letter]])), h)
                torch.testing.assert_close(states[row, 16 * direction:16 * (direction + 1)], h[0])


def test_generator_batch_targets():
    inputs, targets = generator_batch(["Ab", "Abc"])
    a, b, c = (ALPHABET.index(x) for x in "abc")  # folded: the generator learns one letter case
    assert inputs.tolist() == [[SOS, a, b, 0], [SOS, a, b, c]]
    assert targets.tolist() == [[a, b, EOS, -100], [a, b, c, EOS]]


def test_teacher_forcing_matches_step_by_step():
    torch.manual_seed(0)
    model = Generator(N_TOKENS, 4, hidden_size=16, count_order=3).eval()
    inputs, targets = generator_batch(["Hinton", "Li", "Hinds"])
    language = torch.tensor([1, 3, 1])
    model.counts.fill(language, inputs, targets, torch.tensor([1.0, 1.0, 0.3]))
    for share in (0.0, 0.4):  # the network alone, then mixed with the letter counts
        model.counts_share.fill_(share)
        whole = model(language, inputs)
        h = model.initial_state(3)
        for t in range(inputs.shape[1]):
            step, h = model.step(language, inputs[:, :t + 1], h)
            torch.testing.assert_close(step, whole[:, t], atol=1e-5, rtol=0)


def counted(names: list[str], languages: list[int], weights: list[float], order: int = 3) -> LetterCounts:
    counts = LetterCounts(N_TOKENS, 4, order, 0.6)
    inputs, targets = generator_batch(names)
    counts.fill(torch.tensor(languages), inputs, targets, torch.tensor(weights))
    return counts


def test_the_classifier_mixes_in_each_languages_letter_counts_as_a_bayes_classifier_would():
    torch.manual_seed(0)
    model = Classifier(len(ALPHABET), 4, hidden_size=16).eval()
    names = ["Hinton", "Hinds", "Ivanov", "Petrov", "Li"]
    alone = classify(model, names)
    mix_in_counts(model, names, [1, 1, 2, 2, 3], share=0.5)
    mixed = classify(model, names)
    inputs, targets = generator_batch(names)
    counted = (model.counts.log_likelihoods(inputs, targets) / model.counts_temperature).softmax(1)
    expected = (0.5 * alone.exp() + 0.5 * counted).log()
    torch.testing.assert_close(mixed, expected.div(model.mixture_temperature).log_softmax(1), atol=1e-5, rtol=0)
    assert mixed.argmax(1)[:4].tolist() == [1, 1, 2, 2]  # the counts alone would say so for the names they counted


def test_letter_counts_score_a_name_as_the_next_token_probabilities_do():
    counts = counted(["Hinton", "Hinds", "Li", "Lin"], [1, 1, 3, 3], [1.0, 0.3, 1.0, 0.15])
    inputs, targets = generator_batch(["Hint", "Linds", "Q", "Ivanov"])
    by_name = counts.log_likelihoods(inputs, targets)  # (4 names, 4 languages)
    for language in range(4):
        probs = counts(torch.full(inputs.shape, language), counts.contexts(inputs))
        step = probs.gather(-1, targets.clamp(min=0)[..., None])[..., 0].log() * (targets >= 0)
        torch.testing.assert_close(by_name[:, language], step.sum(1))


def test_letter_counts_read_the_tokens_up_to_each_position():
    a, b = ALPHABET.index("a"), ALPHABET.index("b")
    contexts = LetterCounts(N_TOKENS, 4, 3, 0.6).contexts(torch.tensor([[SOS, a, b]]))
    assert contexts.tolist() == [[[-1, SOS], [SOS, a], [a, b]]]


def test_letter_counts_give_a_distribution_after_any_history():
    counts = counted(["Hinton", "Hinds", "Li", "Lin"], [1, 1, 3, 3], [1.0, 0.3, 1.0, 0.15])
    histories, _ = generator_batch(["Hin", "Hinx", "Li", "Q", ""])  # seen, half seen, light weights, unseen, none
    for language in range(4):
        probs = counts(torch.full(histories.shape, language), counts.contexts(histories))  # (5, T, N)
        torch.testing.assert_close(probs.sum(-1), torch.ones(probs.shape[:2]))
        assert (probs[..., SOS] == 0).all() and (probs[..., :SOS] > 0).all()


def test_letter_counts_favour_what_followed_a_history_in_that_language():
    counts = counted(["Hinton", "Hinds"], [1, 1], [1.0, 1.0])
    history, _ = generator_batch(["Hin"])
    after_hin = counts(torch.tensor([[1, 1, 1, 1]]), counts.contexts(history))[0, -1]  # after "^hin" in language 1
    t, d = ALPHABET.index("t"), ALPHABET.index("d")
    assert after_hin[t] == after_hin[d] == after_hin.max() > 0.25
    elsewhere = counts(torch.tensor([[2, 2, 2, 2]]), counts.contexts(history))[0, -1]  # language 2 counted nothing
    torch.testing.assert_close(elsewhere[:SOS], torch.full((SOS,), 1 / (N_TOKENS - 1)))


def test_the_counts_share_is_fitted_to_lower_the_nll_of_the_names_it_is_fitted_on():
    torch.manual_seed(0)
    model = Generator(N_TOKENS, 4, hidden_size=16, count_order=3).eval()
    counted = [("Hinton", 1, 1.0), ("Hinds", 1, 1.0), ("Li", 3, 1.0), ("Lin", 3, 1.0), ("Lind", 3, 1.0)]
    examples = [("Hinson", 1), ("Lint", 3), ("Hilton", 1), ("Xu", 3), ("Quorra", 1)]  # held out: some seen, some not
    fitted = fit_counts_share(model, counted, examples)
    share, mixed = fitted["share"], fitted["validation_nll"]
    assert float(model.counts_share) == pytest.approx(share) and 0 < share < 1  # the share fitted is the one used
    assert mixed == pytest.approx(generator_nll(model, examples), rel=1e-6)
    model.counts_share.fill_(0)
    alone = generator_nll(model, examples)
    assert fitted["validation_nll_network"] == pytest.approx(alone, rel=1e-6) and alone > mixed
    for other in (share / 2, (1 + share) / 2):  # no other share does better on these names
        model.counts_share.fill_(other)
        assert generator_nll(model, examples) > mixed


def test_the_held_out_nll_scores_every_letter_but_the_first_and_the_end_token():
    torch.manual_seed(0)
    model = Generator(N_TOKENS, 4, hidden_size=16, count_order=0).eval()
    examples = [(name, i % 4) for i, name in enumerate(NAMES * 3)]
    total = count = 0.0
    for name, language in examples:  # one name at a time, as the tutorial scores them
        inputs, targets = generator_batch([name])
        with torch.no_grad():
            log_probs = model(torch.tensor([language]), inputs)[0]
        scored = targets[0, 1:]  # the letters after the first, then the end token
        total -= float(log_probs[1:].gather(1, scored[:, None]).sum())
        count += len(scored)
    assert count == sum(len(name) for name, _ in examples)
    assert generator_nll(model, examples) == pytest.approx(total / count, rel=1e-6)


def test_while_training_the_generator_drops_the_same_features_at_every_letter_of_a_name():
    torch.manual_seed(0)
    model = Generator(N_TOKENS, 4, hidden_size=16, dropout=0.5).train()
    seen = []
    model.o2o.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    inputs, _ = generator_batch(["Hinton", "Ivanov", "Li"])
    model(torch.tensor([1, 2, 3]), inputs)
    dropped = seen[0] == 0  # (B, T, H + N): where a feature was dropped
    assert dropped.any() and not dropped.all()
    assert torch.equal(dropped, dropped[:, :1].expand_as(dropped))  # the same features at every letter
    assert not torch.equal(dropped[0], dropped[1])  # and a mask of its own for each name
    model.eval()
    seen.clear()
    model(torch.tensor([1, 2, 3]), inputs)
    assert not (seen[0] == 0).any()  # nothing dropped when not training


def make_generator():
    torch.manual_seed(0)
    return Generator(N_TOKENS, 4, hidden_size=16).eval()


def test_sampling_is_deterministic_with_a_seed_and_respects_prefix_and_length():
    model = make_generator()
    prefixes = ["r", "u", "S", "", "", "iva", "O'N"]
    first = sample(model, 2, prefixes, 1.0, max_length=7, rng=torch.Generator().manual_seed(5))
    again = sample(model, 2, prefixes, 1.0, max_length=7, rng=torch.Generator().manual_seed(5))
    assert first == again
    for (name, _), prefix in zip(first, prefixes):
        assert 1 <= len(name) <= 7
        assert name.startswith(prefix.lower())  # folded: the generator writes no capitals itself
        assert all(c in ALPHABET and not c.isupper() for c in name)
    assert invent(model, 0, ["r", "r"], 1.0, seed=3) == invent(model, 0, ["r", "r"], 1.0, seed=3)


def test_each_name_is_drawn_from_its_own_state_whatever_else_is_in_the_batch():
    """Greedy draws (top-k 1) of names drawn together equal each drawn alone, also after some have ended."""
    model = make_generator()
    with torch.no_grad():
        model.o2o.bias[EOS] += 1.0  # so that this untrained model ends names after one to a dozen letters
    prefixes = ["", "a", "zz", "mo", "k", "o'", "ba", "x"]
    together = sample(model, 3, prefixes, 1.0, top_k=1, max_length=12)
    alone = [sample(model, 3, [prefix], 1.0, top_k=1, max_length=12)[0] for prefix in prefixes]
    assert together == alone
    assert len({len(name) for name, _ in together}) > 2  # names ended at different steps, one near the end


def test_one_batch_of_many_languages_draws_each_row_as_its_own_language_would():
    """Greedy draws with a language and lengths per row equal each language's own batch."""
    model = make_generator()
    with torch.no_grad():
        model.o2o.bias[EOS] += 1.0
    inputs, targets = generator_batch(["kim", "kovacs", "abe", "mori", "ali"])  # letter counts mixed in, per language
    model.counts.fill(torch.tensor([3, 3, 0, 1, 2]), inputs, targets, torch.ones(5))
    model.counts_share.fill_(0.4)
    languages, shortest, longest = torch.tensor([0, 3, 1, 3, 2]), torch.tensor([1, 4, 2, 1, 6]), torch.tensor(
        [9, 5, 12, 3, 8])
    prefixes = ["", "k", "", "mo", "a"]
    together = sample(model, languages, prefixes, 1.0, 1, longest, min_length=shortest)
    alone = [sample(model, int(languages[i]), [prefix], 1.0, 1, int(longest[i]), min_length=int(shortest[i]))[0]
             for i, prefix in enumerate(prefixes)]
    assert together == alone
    assert all(int(low) <= len(name) <= int(high) for (name, _), low, high in zip(together, shortest, longest))


def test_invent_keeps_names_apart_within_a_language_only():
    """A model deaf to the language draws the same greedy name in each: a request of many languages gets it once per
    language, and a second prefix of one language finds no other."""
    model = make_generator()
    with torch.no_grad():
        model.i2h_language.weight.zero_()
        model.i2o_language.weight.zero_()
    greedy = sample(model, 0, ["o'"], 1.0, top_k=1, max_length=12)[0][0]
    names = invent(model, torch.tensor([2, 0, 0]), ["o'"] * 3, 1.0, "'", 1, 12, seed=0, avoid=set())
    assert names == [write_as_data_set(greedy, "'")] * 2 + [None]


def test_invent_avoids_repeats_and_writes_names_as_the_data_set_does():
    model = make_generator()
    with torch.no_grad():  # a model that can write only two names, "A" and "B": it ends every name after one letter
        model.o2o.weight.zero_()
        model.o2o.bias.fill_(-50).index_fill_(0, torch.tensor([LETTER_INDEX["a"], LETTER_INDEX["b"]]), 10)
        model.o2o.bias[EOS] = 50
    for seed in range(20):  # two drawn alone would be the same name half the time
        assert sorted(invent(model, 1, ["", ""], 1.0, top_k=2, seed=seed, candidates=16)) == ["A", "B"]
    model = make_generator()
    names = invent(model, 1, ["r"] * 4, 1.5, capital_after="'", seed=0)
    assert len(set(names)) == 4 and all(n.startswith("R") for n in names)
    for name in invent(model, 1, ["o'"] * 5, 1.5, capital_after="'", seed=1):
        assert name.startswith("O'")
        assert all(c.isupper() == (i == 0 or name[i - 1] == "'") for i, c in enumerate(name) if c.isalpha())
    mixed = invent(model, torch.tensor([1, 1]), ["o'", "o'"], 1.5, ["'", ""], seed=1)  # a casing per prefix
    assert mixed[0][2].isupper() and mixed[1][2].islower()


def test_novel_names_avoid_the_known_ones_and_come_back_fewer_when_there_are_none():
    model = make_generator()
    plenty = invent(model, 0, [""] * 5, 1.0, seed=0)
    avoid = {plenty[0].lower(), plenty[1].lower()}
    novel = invent(model, 0, [""] * 5, 1.0, seed=0, avoid=avoid)
    assert None not in novel and not {name.lower() for name in novel} & avoid
    every_one_letter_name = set(ALPHABET.lower())
    assert invent(model, 0, [""] * 3, 1.0, max_length=1, seed=0, avoid=every_one_letter_name) == [None] * 3


@pytest.mark.parametrize("language", range(4))
def test_a_beam_finds_the_likeliest_short_names_that_brute_force_finds(language):
    """Every name of at most 3 letters that a beam may write, scored as the beam scores it (capitals and the start
    token ruled out, nothing renormalised), ranked: the beam's five are the five best, with their scores."""
    model = make_generator()
    letters = [LETTER_INDEX[c] for c in ALPHABET if not c.isupper()]
    names = ["".join(ALPHABET[i] for i in combo) for n in (1, 2, 3) for combo in itertools.product(letters, repeat=n)]
    inputs, targets = generator_batch(names)
    with torch.no_grad():
        log_probs = model(torch.full((len(names),), language), inputs)
    log_probs[..., [SOS, *(LETTER_INDEX[c] for c in ALPHABET if c.isupper())]] = -math.inf
    scored = targets >= 0
    totals = (log_probs.gather(2, targets.clamp(min=0)[..., None])[..., 0] * scored).sum(1)
    best = totals.topk(5)
    beam = beam_search(model, language, "", 5, max_length=3)
    assert [name for name, _ in beam] == [names[i] for i in best.indices.tolist()]
    assert [score for _, score in beam] == pytest.approx(best.values.tolist(), abs=1e-4)


def test_beam_log_probabilities_are_the_models_own():
    model = make_generator()
    for name, score in beam_search(model, 2, "ab", 3) + beam_search(model, 1, "", 3):
        inputs, targets = generator_batch([name])
        with torch.no_grad():
            log_probs = model(torch.tensor([2 if name.startswith("ab") else 1]), inputs)[0]
        given = 2 if name.startswith("ab") else 0  # prefix letters are given, not scored
        picked = log_probs[torch.arange(len(name) + 1), targets[0]][given:]
        assert score == pytest.approx(float(picked.sum()), abs=1e-4)


def test_top_k_of_one_is_greedy_and_no_likelier_than_the_likeliest_name():
    model = make_generator()
    drawn = sample(model, 3, ["k"] * 3, 1.0, top_k=1, rng=torch.Generator().manual_seed(0))
    assert len({name for name, _ in drawn}) == 1  # the likeliest letter every time: one name
    inputs, targets = generator_batch([drawn[0][0]])
    with torch.no_grad():
        greedy = float(model(torch.tensor([3]), inputs)[0, 1:].gather(1, targets[0, 1:, None]).sum())
    assert beam_search(model, 3, "k", 1)[0][1] >= greedy - 1e-5


def test_no_name_is_shorter_than_the_languages_shortest():
    model = make_generator()
    dataset = Dataset(["Korean", "Greek"], [("Li", 0), ("Park", 0), ("Pappas", 1), ("Manolas", 1)])
    assert learn_lengths(dataset) == {"Korean": [2, 4], "Greek": [6, 7]}
    drawn = sample(model, 1, [""] * 200, 2.0, rng=torch.Generator().manual_seed(0))
    assert min(len(name) for name, _ in drawn) < 6  # unconstrained, this tiny model ends names early
    drawn = sample(model, 1, [""] * 200, 2.0, rng=torch.Generator().manual_seed(0), min_length=6)
    assert min(len(name) for name, _ in drawn) >= 6
    assert all(len(name) >= 6 for name in invent(model, 1, ["pa"] * 5, 2.0, seed=0, min_length=6))
    assert all(len(name) >= 6 for name, _ in beam_search(model, 1, "m", 5, min_length=6))
    assert [len(name) for name in invent(model, 1, [""] * 5, 2.0, max_length=3, seed=0, min_length=6)] == [3] * 5


def test_casing_is_learnt_from_how_the_data_set_writes_each_language():
    dataset = Dataset(["Irish", "French"], [("O'Neil", 0), ("O'Brien", 0), ("D'arcy", 1), ("De la fontaine", 1)])
    casing = learn_casing(dataset)
    assert casing == {"Irish": "'", "French": ""}
    assert write_as_data_set("o'neil", casing["Irish"]) == "O'Neil"
    assert write_as_data_set("de la cruz", casing["French"]) == "De la cruz"
    assert case_pattern("O'Neil") == "X'Xxxx"


def test_the_tutorial_cell_is_i2h_of_input_and_hidden_side_by_side_and_rnn_adds_a_tanh():
    """`hidden = i2h(cat(input, hidden))` with a one-hot input: the input's columns of i2h are an embedding row."""
    torch.manual_seed(0)
    model = Classifier(len(ALPHABET), 5, hidden_size=6, cell="tutorial", directions=1, one_case=False).eval()
    embedding, cell = model.i2h[0], model.cells[0]
    i2h = torch.cat((embedding.weight[:len(ALPHABET)].T, cell.h2h.weight), dim=1)  # (H, letters + H), one Linear
    letters, h = torch.tensor([3, 0, 41]), torch.randn(3, 6)
    one_hot = F.one_hot(letters, len(ALPHABET)).float()
    expected = torch.cat((one_hot, h), dim=1) @ i2h.T + cell.h2h.bias
    torch.testing.assert_close(cell(embedding(letters), h), expected)
    tanh = RNNCell(6)
    tanh.load_state_dict(cell.state_dict())
    torch.testing.assert_close(tanh(embedding(letters), h), torch.tanh(expected))


def test_rung_0_trains_as_the_tutorials_networks_do():
    """A few steps of each model at the ladder's rung 0: its cell, one direction, letters as written, plain NLL."""
    from bench import GENERATOR_RUNGS, TUTORIAL_CLASSIFIER
    from data import load_training_data
    from train import CLASSIFIER, GENERATOR, train_classifier, train_generator
    dataset, real = load_training_data()
    validation = dataset.split("validation")[:300]
    classifier_settings = {**CLASSIFIER, **TUTORIAL_CLASSIFIER, "hidden_size": 32}
    torch.manual_seed(0)
    untrained = Classifier(len(ALPHABET), 18, hidden_size=32, cell="tutorial", directions=1, one_case=False).eval()
    model, history = train_classifier(dataset, real, classifier_settings, torch.device("cpu"), 0, 30, log=str)
    assert isinstance(model.cells[0], TutorialCell) and len(model.cells) == 1 and not model.one_case
    assert history["steps"] == 30 and all(weight == 1.0 for _, _, weight in history["examples"])  # the data set only

    def nll(classifier):
        truth = torch.tensor([label for _, label in validation])
        return float(F.nll_loss(classify(classifier, [name for name, _ in validation]), truth))

    assert nll(model) < nll(untrained) - 0.5
    generator_settings = {**GENERATOR, **GENERATOR_RUNGS[0][1], "hidden_size": 32}
    torch.manual_seed(0)
    untrained = Generator(N_TOKENS, 18, hidden_size=32, cell="tutorial").eval()
    model, history = train_generator(dataset, real, generator_settings, torch.device("cpu"), 0, 30, log=str)
    assert isinstance(model.cell, TutorialCell) and history["steps"] == 30
    assert generator_nll(model, validation) < generator_nll(untrained, validation) - 0.5


def test_the_classifier_reads_any_letter_case_alike():
    torch.manual_seed(0)
    model = Classifier(len(ALPHABET), 5, hidden_size=16).eval()
    for name in ["Hinton", "McDonald", "de la Cruz", "O'Neil"]:
        variants = classify(model, [name, name.upper(), name.lower(), name.swapcase()])
        assert torch.equal(variants, variants[:1].expand_as(variants))


def test_answers_best_first_with_the_sure_flag():
    log_probs = torch.log_softmax(torch.tensor([[0.0, 2.0, 1.0], [3.0, 0.0, 0.0]]), dim=1)
    first, second = answers(["b?", "a"], ["b", "a"], log_probs, ["a", "b", "c"], 2, sure_from=0.7)
    assert first["name"] == "b?" and first["normalised"] == "b"
    assert [language for _, language in first["result"]] == ["b", "c"]
    assert first["result"][0][0] == pytest.approx(float(log_probs[0, 1]), abs=1e-4)
    assert first["sure"] is False and second["sure"] is True  # p(b) = 0.665, p(a) = 0.910
    assert [len(record["result"]) for record in answers(["b", "a"], ["b", "a"], log_probs, ["a", "b", "c"], 10,
                                                         0.5)] == [3, 3]


def classifier_checkpoint(model: Classifier, args: dict, **changes) -> dict:
    checkpoint = {"kind": "classifier", "model_args": args, "state_dict": model.state_dict(), "alphabet": ALPHABET,
                  "languages": ["a", "b", "c"], "sure_threshold": 0.9, "metrics": {"test": {"accuracy": 0.5}}}
    checkpoint.update(changes)
    return {key: value for key, value in checkpoint.items() if value is not None}


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    args = {"n_letters": len(ALPHABET), "n_languages": 3, "hidden_size": 8, "cell": "gru", "dropout": 0.1}
    model = Classifier(**args).eval()
    model.temperature.fill_(1.7)
    path = tmp_path / "c.pt"
    save_checkpoint(classifier_checkpoint(model, args), path)
    checkpoint = torch.load(path, weights_only=True)  # plain tensors and metadata only
    assert checkpoint["languages"] == ["a", "b", "c"]
    rebuilt, _ = load_model(path, "classifier")
    assert float(rebuilt.temperature) == pytest.approx(1.7)  # the calibration travels with the weights
    torch.testing.assert_close(classify(rebuilt, NAMES), classify(model, NAMES))
    with pytest.raises(CheckpointError, match="not a generator"):
        load_checkpoint(path, "generator")


@pytest.mark.parametrize("changes, message", [
    ({"state_dict": None}, "state_dict"),
    ({"sure_threshold": None}, "sure_threshold"),
    ({"alphabet": "abc"}, "alphabet"),
    ({"languages": []}, "language"),
    ({"languages": ["a", "b"]}, "language list does not match"),
    ({"model_args": {"hidden_size": 8}}, "does not fit"),
    ({"state_dict": {"h2o.weight": torch.zeros(3, 3)}}, "does not fit"),
])
def test_a_checkpoint_this_code_cannot_use_is_one_clear_error(tmp_path, changes, message):
    torch.manual_seed(0)
    args = {"n_letters": len(ALPHABET), "n_languages": 3, "hidden_size": 8, "cell": "gru", "dropout": 0.1}
    path = tmp_path / "c.pt"
    save_checkpoint(classifier_checkpoint(Classifier(**args), args, **changes), path)
    with pytest.raises(CheckpointError, match=message) as error:
        load_model(path, "classifier")
    assert "\n" not in str(error.value) and "python train.py" in str(error.value)


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


def tiny_index():
    torch.manual_seed(0)
    model = Classifier(len(ALPHABET), 3, hidden_size=12).eval()
    names = ["Ivanov", "Hinton", "Nakamura", "Rossi", "Smith", "Kowalski", "Li", "Schmidt", "Tanaka", "Petrov"]
    dataset = Dataset(["a", "b", "c"], [(name, i % 3) for i, name in enumerate(names)])
    known = NearestNames(model, dataset)
    assert known.names == [name for name, _ in dataset.split("train")]  # the training split only
    return model, known


def test_letter_scores_are_the_fall_in_the_top_languages_log_odds_without_that_letter():
    model, known = tiny_index()
    names = ["Hinton", "de la Cruz", "O'Neil", "X"]
    together = explanations(model, names, known)
    assert explanations(model, names, known) == together  # reproducible
    assert [explanations(model, [name], known)[0] for name in names] == together  # batch-independent
    for name, explanation in zip(names, together):
        assert [letter for letter, _ in explanation["letters"]] == list(name)
        with torch.no_grad():
            whole = model(*model.encode([name]))[0].double().exp()
            top = int(whole.argmax())
            hidden = [model(*model.encode([name[:i] + name[i + 1:]]))[0, top].double().exp() for i in range(len(name))]
        odds = float(torch.logit(whole[top]))
        for (_, score), without in zip(explanation["letters"], hidden):
            assert score == pytest.approx(odds - float(torch.logit(without)), abs=1e-3)


def test_letter_scores_stay_apart_when_the_model_is_sure():
    log_probs = torch.log_softmax(torch.tensor([[30.0, 0.0, 0.0], [25.0, 0.0, 0.0], [30.0, 0.0, 5.0]]), dim=1)
    assert log_probs[:, 0].exp().tolist() == [1.0, 1.0, 1.0]  # every probability rounds to 1 in float32
    odds = log_odds(log_probs, 0)
    torch.testing.assert_close(odds, torch.tensor([30 - math.log(2), 25 - math.log(2), 30 - math.log(1 + math.exp(5))]))


def test_a_training_name_is_nearest_to_itself():
    model, known = tiny_index()
    for name in known.names:
        first = explanations(model, [name], known)[0]["nearest"][0]
        assert first[0] == name and first[2] == pytest.approx(1.0, abs=1e-4)
    assert all(len(e["nearest"]) == 3 for e in explanations(model, ["Hinton", "Qqq"], known))


def test_the_hand_built_gru_cell_equals_torch_gru_cell_in_values_and_gradients():
    torch.manual_seed(0)
    reference = torch.nn.GRUCell(5, 6)
    cell = GRUCell(6)
    with torch.no_grad():
        cell.h2h.weight.copy_(reference.weight_hh)
        cell.h2h.bias.copy_(reference.bias_hh)
    x, h = torch.randn(4, 5), torch.randn(4, 6, requires_grad=True)
    ours = cell(x @ reference.weight_ih.T + reference.bias_ih, h)  # the input rows hold x's projection
    theirs = reference(x, h)
    torch.testing.assert_close(ours, theirs)
    (ours * torch.arange(6.0)).sum().backward()
    ours_grad = (h.grad.clone(), cell.h2h.weight.grad.clone())
    h.grad = None
    (theirs * torch.arange(6.0)).sum().backward()
    torch.testing.assert_close(ours_grad[0], h.grad)
    torch.testing.assert_close(ours_grad[1], reference.weight_hh.grad)


@pytest.mark.parametrize("cell_type", [GRUCell, RNNCell])
def test_unroll_is_the_cells_steps_one_letter_at_a_time(cell_type):
    torch.manual_seed(0)
    cell = cell_type(4)
    inputs, h = torch.randn(3, 5, cell_type.input_width * 4), torch.randn(3, 4)
    states = unroll(cell, inputs, h)
    state = h
    for t in range(5):
        state = cell(inputs[:, t], state)
        torch.testing.assert_close(states[:, t], state)


def test_letter_dropout_hides_whole_letters_whose_stand_in_row_stays_zero():
    torch.manual_seed(0)
    model = Classifier(len(ALPHABET), 5, hidden_size=8, dropout=0.0, letter_dropout=1.0).train()
    hinton, qwerty = model(*model.encode(["Hinton", "Qwerty"]))
    torch.testing.assert_close(hinton, qwerty)  # every letter hidden: names of one length read alike
    (hinton - qwerty * 2).sum().backward()
    assert all(not i2h.weight.grad.any() for i2h in model.i2h)  # the stand-in row learns nothing
    assert not model.i2h[0].weight[-1].any()
    model.eval()
    assert not torch.allclose(*model(*model.encode(["Hinton", "Qwerty"])))


def test_the_device_flag_takes_auto_cpu_cuda_and_mps_and_refuses_what_is_not_here(monkeypatch):
    assert parse_device("cpu") == torch.device("cpu")
    for cuda, mps, expected in ((True, True, "cuda"), (True, False, "cuda"), (False, True, "mps"),
                                (False, False, "cpu")):  # auto: CUDA, then MPS, then the CPU
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: int(cuda))
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
        assert parse_device("auto") == torch.device(expected)
    for missing in ["cuda", "cuda:0", "mps"]:  # none of either, as patched last
        with pytest.raises(argparse.ArgumentTypeError, match=f"'{missing}' is not available"):
            parse_device(missing)
    monkeypatch.undo()
    with pytest.raises(argparse.ArgumentTypeError, match=f"'cuda:{torch.cuda.device_count()}' is not available"):
        parse_device(f"cuda:{torch.cuda.device_count()}")
    for unknown in ["tpu", "gpu", "cuda:x", ""]:
        with pytest.raises(argparse.ArgumentTypeError, match="unknown device"):
            parse_device(unknown)


ACCELERATOR = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else None


@pytest.mark.skipif(ACCELERATOR is None, reason="no CUDA or MPS device here: a model built on the CPU would pass "
                    "without make_checkpoint's .cpu(); this runs where one is")
def test_a_checkpoint_made_on_a_device_holds_cpu_tensors_and_answers_the_same_there_and_on_the_cpu(tmp_path):
    torch.manual_seed(0)
    args = {"n_letters": len(ALPHABET), "n_languages": 3, "hidden_size": 8}
    model = Classifier(**args).to(ACCELERATOR).eval()
    mix_in_counts(model)
    path = tmp_path / "c.pt"
    save_checkpoint(make_checkpoint("classifier", model, args, ["a", "b", "c"], sure_threshold=0.9), path)
    stored = torch.load(path, map_location=ACCELERATOR, weights_only=True)["state_dict"]
    assert all(tensor.device.type == "cpu" for tensor in stored.values())  # stored on the CPU whatever the loader
    on_cpu, _ = load_model(path, "classifier", torch.device("cpu"))
    assert device_of(on_cpu).type == "cpu"
    torch.testing.assert_close(classify(on_cpu, NAMES), classify(model, NAMES), atol=1e-4, rtol=0)


def test_the_ladder_page_gets_new_tables_and_keeps_its_hand_written_text_and_removed_rows(tmp_path):
    import bench
    page = tmp_path / "ladder.md"
    page.write_text(f"# The ladder\n\nWritten by hand.\n\n{bench.TABLES}\nold tables\n\n## Removed\n\n- gone\n")

    def seeds(kind: str, value: float) -> list[dict]:  # two seeds 0.01 apart: a spread of 0.007
        figures = {key: value for key, _ in bench.COLUMNS[kind]}
        return [{"validation": {k: v + d for k, v in figures.items()}, "test": figures, "seconds": 10.0}
                for d in (0, 0.01)]

    figures = {kind: [seeds(kind, row / 10) for row in range(len(bench.ladder_rows(kind)))]
               for kind in ("classifier", "generator")}
    bench.write_ladder(figures, [1, 2], page, "python bench.py --ladder")
    text = page.read_text()
    assert text.startswith(f"# The ladder\n\nWritten by hand.\n\n{bench.TABLES}\nWritten by `python bench.py --ladder`")
    assert "old tables" not in text and text.endswith("\n## Removed\n\n- gone\n")
    validation = text[text.index("## Classifier: validation names"):text.index("## Classifier: test names")]
    rows = {line.split(" | ")[1]: line for line in validation.splitlines()[4:-1]}
    assert rows["GRU cell"].endswith("| 10 ± 0 | pays (+0.100) |")  # accuracy up by more than the spread
    assert rows["calibration"].endswith("| within the spread (-0.100) |")  # its ECE rose: no better
    assert rows["`nn.GRU` for the hand-built GRU cells"].endswith("| no faster (+0 s) |")
    assert rows["the tutorial's RNN, batched"].endswith("| rung 0 |")
