"""The scripts as a user runs them: real subprocesses, real checkpoints from a short training run."""
import json
import math
import random
import re
import signal
import subprocess
import sys

import pytest
import torch

from data import Dataset, fold, in_split, learn_lengths, load_dataset, load_real_names
from evaluate import case_agreement, classifier_score, generator_nll
from fitting import DISTINCT_SHARE, MAX_DRAWS, SAMPLING_GRID
from helpers import ROOT, like_a_terminal, run
from model import CLASSIFIER_PATH, GENERATOR_PATH, N_TOKENS, classify, load_checkpoint, load_model
from data import draw_share, generator_examples
from train import fit
import sample

LINE = re.compile(r"^\((-?\d+\.\d\d)\) ([A-Z][a-z]+)(  \((sure|not sure)\))?$")


def in_process(script, capsys, *argv: str) -> subprocess.CompletedProcess:
    """A script's main run in this process, as `run` runs it in another: no torch import per run."""
    try:
        status = script.main([str(arg) for arg in argv])
    except SystemExit as stop:  # argparse's errors
        status = stop.code
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(argv, status, out, err)


def sample_names(checkpoint, capsys, *argv: str) -> list[str]:
    result = in_process(sample, capsys, "--checkpoint", checkpoint, *argv)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_training_writes_checkpoints_and_plots(trained):
    for name in ["classifier.pt", "generator.pt", "classifier_loss.png", "generator_loss.png", "confusion.png",
                 "reliability.png"]:
        assert (trained / name).stat().st_size > 0
    checkpoint = load_checkpoint(trained / "classifier.pt", "classifier")
    assert checkpoint["languages"] == load_dataset().languages
    assert "crc32" in checkpoint["split_rule"]
    generator = load_checkpoint(trained / "generator.pt", "generator")
    # the default temperature and top-k: the most realistic pair of the grid that finds new names cheaply enough
    table = generator["sampling_table"]
    assert [(row["temperature"], row["top_k"]) for row in table] == SAMPLING_GRID
    chosen = next(row for row in table if (row["temperature"], row["top_k"]) == (generator["temperature"],
                                                                                  generator["top_k"]))
    if chosen.get("distinct", 0) >= DISTINCT_SHARE and chosen["draws"] <= MAX_DRAWS:
        better = [row for row in table if row["realism"] > chosen["realism"] and row["draws"] <= MAX_DRAWS]
        assert all(row.get("distinct", 0) < DISTINCT_SHARE for row in better)
    else:  # no pair qualified: the most varied one
        assert chosen == max(table, key=lambda row: (row["temperature"], row["top_k"]))


def test_a_tiny_classifier_beats_always_russian_on_validation(trained):
    dataset = load_dataset()
    validation = dataset.split("validation")
    russian = dataset.languages.index("Russian")
    always_russian = sum(label == russian for _, label in validation) / len(validation)
    model, _ = load_model(trained / "classifier.pt", "classifier")
    guesses = classify(model, [name for name, _ in validation]).argmax(1).tolist()
    accuracy = sum(guess == label for guess, (_, label) in zip(guesses, validation)) / len(validation)
    assert accuracy > always_russian + 0.05


def test_a_tiny_generator_beats_uniform_letters_on_validation(trained):
    generator, _ = load_model(trained / "generator.pt", "generator")
    nll = generator_nll(generator, load_dataset().split("validation"))
    assert nll < math.log(N_TOKENS - 1) - 1.0


def test_the_classifier_answers_alike_in_any_letter_case(trained):
    model, _ = load_model(trained / "classifier.pt", "classifier")
    names = [name for name, _ in load_dataset().split("test")]
    assert case_agreement(model, names) == 1.0  # every test name: UPPER, lower and as written agree


def test_calibration_lowers_validation_nll_and_is_stored(trained):
    checkpoint = load_checkpoint(trained / "classifier.pt", "classifier")
    calibration, stored = checkpoint["calibration"], checkpoint["state_dict"]
    assert calibration["nll_after"] <= calibration["nll_before"]
    assert float(stored["temperature"]) == calibration["temperature"] != 1.0
    for key in ("counts_share", "counts_temperature", "mixture_temperature"):
        assert float(stored[key]) == pytest.approx(calibration[key])
    assert 0 < checkpoint["sure_threshold"] <= 1
    for key in ("test", "real"):
        assert 0 <= checkpoint["metrics"][key]["classifier"]["ece"] <= 1


def test_answers_marked_sure_were_right_95_percent_of_the_time_on_validation_names(trained):
    """README's promise, on the trained model: the sure threshold is the lowest at which answers on the validation
    names (the data set's and the real ones, which it was fitted on) were right at least 95% of the time."""
    threshold = load_checkpoint(trained / "classifier.pt", "classifier")["sure_threshold"]
    model, _ = load_model(trained / "classifier.pt", "classifier")
    dataset = load_dataset()
    examples = dataset.split("validation") + in_split(load_real_names(dataset), "validation")
    confidence, guess = classify(model, [name for name, _ in examples]).exp().max(1)
    right = (guess == torch.tensor([label for _, label in examples])).double()
    sure = confidence >= threshold
    if sure.any():
        assert right[sure].mean() >= 0.95
    order = confidence.argsort(descending=True)
    precision = right[order].cumsum(0) / torch.arange(1, len(order) + 1)  # of the answers down to each one
    ranked = confidence[order]
    threshold_here = torch.cat((ranked[1:] < ranked[:-1], torch.tensor([True])))  # a threshold takes ties together
    assert (precision[~sure[order] & threshold_here] < 0.95).all()  # any lower threshold would break the promise


def test_the_letter_counts_share_is_the_one_with_the_best_validation_score(trained):
    """Scored afresh through classify, each share of the grid against the one train.py chose."""
    checkpoint = load_checkpoint(trained / "classifier.pt", "classifier")
    model, _ = load_model(trained / "classifier.pt", "classifier")
    dataset = load_dataset()
    real = in_split(load_real_names(dataset), "validation")
    by_share = {}
    for twentieths in range(13):
        model.counts_share.fill_(twentieths / 20)
        by_share[twentieths / 20] = classifier_score(model, dataset.split("validation"), real, 18)[0]
    chosen = checkpoint["calibration"]["counts_share"]
    assert by_share[chosen] == pytest.approx(max(by_share.values()), abs=1e-9)
    assert checkpoint["calibration"]["score"] == pytest.approx(by_share[chosen], abs=1e-9)


def test_the_real_name_check_holds_no_name_from_the_data_set():
    dataset = load_dataset()
    known = {fold(name) for name, _ in dataset.pairs}
    held_out = in_split(load_real_names(dataset), "test")
    assert len(held_out) > 1500 and not {fold(name) for name, _ in held_out} & known


@pytest.mark.parametrize("model", ["classifier", "generator"])
def test_same_seed_same_model(tmp_path, model):
    for out in ("a", "b"):
        result = run("train.py", "--model", model, "--dry-run", "--hidden-size", "16", "--out", str(tmp_path / out))
        assert result.returncode == 0, result.stderr
    a = load_checkpoint(tmp_path / "a" / f"{model}.pt", model)["state_dict"]
    b = load_checkpoint(tmp_path / "b" / f"{model}.pt", model)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_ctrl_c_after_an_epoch_stops_training_and_still_saves(tmp_path):
    process = subprocess.Popen([sys.executable, "-u", "train.py", "--model", "classifier", "--hidden-size", "16",
                                "--epochs", "50", "--real-weight", "0", "--out", str(tmp_path)], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=like_a_terminal)
    for line in process.stdout:  # let the first epoch end, then interrupt the second
        if line.startswith("epoch 1:"):
            break
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert "interrupted" in out and "epoch 50:" not in out
    model, checkpoint = load_model(tmp_path / "classifier.pt", "classifier")
    assert checkpoint["languages"] == load_dataset().languages


def test_ctrl_c_stops_both_models_trained_side_by_side_and_saves_both(tmp_path):
    process = subprocess.Popen([sys.executable, "-u", "train.py", "--hidden-size", "16", "--epochs", "200",
                                "--real-weight", "0", "--out", str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, preexec_fn=like_a_terminal)
    seen = set()
    for line in process.stdout:  # both models through an epoch, then Ctrl-C to this process alone
        seen |= {model for model, start in (("classifier", "epoch 1:"), ("generator", "[generator] epoch 1:"))
                 if line.startswith(start)}
        if len(seen) == 2:
            break
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=180)
    assert process.returncode == 0, err
    assert out.count("interrupted") == 2 and "epoch 200:" not in out
    for kind in ("classifier", "generator"):
        assert load_checkpoint(tmp_path / f"{kind}.pt", kind)["languages"] == load_dataset().languages


def test_fit_keeps_the_best_epoch_when_interrupted():
    torch.manual_seed(0)
    model = torch.nn.Linear(1, 1)
    snapshots, scores = [], iter([0.2, 0.9, 0.4])

    def loss_of(batch):
        if len(snapshots) == 3:  # three epochs validated: Ctrl-C in the fourth
            raise KeyboardInterrupt
        return (model(torch.ones(1, 1)) - 5).pow(2).sum(), ""

    def validate():
        snapshots.append(model.weight.detach().clone())
        return next(scores), 0.0, ""

    history = fit(model, [("a",), ("b",)], loss_of, validate, epochs=10, lr=0.1, batch_size=1,
                  rng=random.Random(0), max_steps=None, log=lambda line: None)
    assert not torch.equal(snapshots[1], snapshots[2])  # training moved the weights after the best epoch
    assert torch.equal(model.weight, snapshots[1]) and history["best_epoch"] == 2


def test_each_epoch_draws_its_share_of_the_extra_names_at_a_matching_weight():
    examples = [(f"name{i}", 0, 0.3) for i in range(10_000)]
    drawn = draw_share(examples, 0.25, random.Random(0))
    assert len(drawn) == pytest.approx(2_500, rel=0.05) and {weight for _, _, weight in drawn} == {0.3 / 0.25}
    assert {name for name, _, _ in drawn} != {name for name, _, _ in draw_share(examples, 0.25, random.Random(1))}
    assert draw_share(examples, 1.0, random.Random(0)) == examples


def test_the_generator_learns_only_real_names_in_shapes_its_language_uses():
    dataset = Dataset(["Dutch"], [("Bakker", 0), ("Van Dijk", 0), ("Mulder", 0)])
    real = [(name, 0) for name in ["Van Dorp", "Van Gent", "Te Boelsen", "Pieterszoon", "Smit", "Ter Horst"]]
    data_set_names, extra = generator_examples(dataset, real, 0.15)
    assert {name for name, _, _ in extra} == {"Van Dorp", "Van Gent"}  # Xxx Xxxx, as Van Dijk: the train part's
    assert all(weight == 0.15 for _, _, weight in extra)
    assert generator_examples(dataset, real, 0)[1] == []


def test_train_rejects_a_missing_data_folder(tmp_path):
    result = run("train.py", "--data-dir", str(tmp_path / "missing"), "--out", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "missing" in result.stderr
    assert not list(tmp_path.glob("*.pt"))


def test_train_on_another_folder_of_labels(tmp_path):
    data = tmp_path / "genders"
    data.mkdir()
    (data / "male.txt").write_text("\n".join(f"Jon{c}{d}" for c in "abcdefgh" for d in "xyzw"), encoding="utf-8")
    (data / "female.txt").write_text("\n".join(f"Mar{c}{d}a" for c in "abcdefgh" for d in "xyzw"), encoding="utf-8")
    result = run("train.py", "--model", "classifier", "--epochs", "15", "--batch-size", "8", "--hidden-size", "16",
                 "--data-dir", str(data), "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert load_checkpoint(tmp_path / "classifier.pt", "classifier")["languages"] == ["female", "male"]
    for name, label in [("Jonqx", "male"), ("Marqxa", "female")]:  # unseen letters in the middle
        predicted = run("predict.py", "--checkpoint", str(tmp_path / "classifier.pt"), "-n", "2", name)
        lines = predicted.stdout.splitlines()
        assert [line.split()[1] for line in lines] == [label, ({"male", "female"} - {label}).pop()]


def test_a_generator_trains_on_another_folder_of_labels_with_no_real_names_for_them(tmp_path):
    data = tmp_path / "colours"
    data.mkdir()
    (data / "red.txt").write_text("\n".join(f"Rub{c}{d}o" for c in "abcdefgh" for d in "lmnr"), encoding="utf-8")
    (data / "blue.txt").write_text("\n".join(f"Azu{c}{d}e" for c in "abcdefgh" for d in "lmnr"), encoding="utf-8")
    result = run("train.py", "--model", "generator", "--dry-run", "--hidden-size", "16", "--data-dir", str(data),
                 "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    checkpoint = load_checkpoint(tmp_path / "generator.pt", "generator")
    assert checkpoint["languages"] == ["blue", "red"]
    assert all(row["realism"] == 0 for row in checkpoint["sampling_table"])  # no held-out real names to count


def test_predict_prints_top_three_best_first(trained):
    result = run("predict.py", "--checkpoint", str(trained / "classifier.pt"), "Hinton")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    assert LINE.match(lines[0]).group(4) in ("sure", "not sure")  # the first line says whether to trust it
    assert all(LINE.match(line).group(3) is None for line in lines[1:])
    values = [float(LINE.match(line).group(1)) for line in lines]
    assert values == sorted(values, reverse=True) and all(v <= 0 for v in values)
    languages = load_dataset().languages
    assert all(LINE.match(line).group(2) in languages for line in lines)
    more = run("predict.py", "--checkpoint", str(trained / "classifier.pt"), "-n", "5", "Hinton")
    assert more.stdout.splitlines()[:3] == lines and len(more.stdout.splitlines()) == 5
    shouted = run("predict.py", "--checkpoint", str(trained / "classifier.pt"), "HINTON", "hinton")
    assert shouted.stdout.split("> hinton")[1].strip() == shouted.stdout.split("> HINTON")[1].split(">")[0].strip()


def test_predict_json_from_stdin_keeps_order_and_reports_bad_lines(trained):
    names = ["Hinton", "123", "Ślusàrski", "", "Nakamura"]
    result = run("predict.py", "--checkpoint", str(trained / "classifier.pt"), "--json", "-n", "2", "-",
                 stdin="\n".join(names) + "\n")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["name"] for r in records] == names
    assert "error" in records[1] and "error" in records[3]
    assert records[2]["normalised"] == "Slusarski"
    for record in (records[0], records[2], records[4]):
        assert len(record["result"]) == 2 and record["result"][0][0] >= record["result"][1][0]
        assert isinstance(record["sure"], bool)
    single = run("predict.py", "--checkpoint", str(trained / "classifier.pt"), "-n", "2", "Nakamura")
    best = LINE.match(single.stdout.splitlines()[0])
    assert records[4]["result"][0][1] == best.group(2)
    assert abs(records[4]["result"][0][0] - float(best.group(1))) < 0.006


def test_predict_answers_the_good_names_and_says_each_bad_one_in_a_line(trained):
    result = run("predict.py", "--checkpoint", str(trained / "classifier.pt"), "Hinton", "1234", "Tanaka", "",
                 "x" * 60)
    assert result.returncode == 2
    assert [line for line in result.stdout.splitlines() if line.startswith(">")] == ["> Hinton", "> Tanaka"]
    assert len([line for line in result.stdout.splitlines() if LINE.match(line)]) == 6
    errors = result.stderr.splitlines()
    assert len(errors) == 3 and all(line.startswith("error: ") for line in errors)
    assert "'1234'" in errors[0] and "''" in errors[1] and "at most 50 characters" in errors[2]


def test_predict_errors(trained, tmp_path):
    missing = run("predict.py", "--checkpoint", str(tmp_path / "none.pt"), "Hinton")
    assert missing.returncode == 1 and "python train.py" in missing.stderr
    assert missing.stderr.count("\n") == 1 and "Traceback" not in missing.stderr
    no_letters = run("predict.py", "--checkpoint", str(trained / "classifier.pt"), "1234")
    assert no_letters.returncode == 2 and no_letters.stderr.count("\n") == 1 and no_letters.stdout == ""
    bad_n = run("predict.py", "--checkpoint", str(trained / "classifier.pt"), "-n", "0", "Hinton")
    assert bad_n.returncode == 2 and bad_n.stderr.count("\n") == 1


def test_predict_does_not_import_matplotlib(trained):
    code = ("import sys, predict; predict.main(['--checkpoint', sys.argv[1], 'Hinton']); "
            "print('matplotlib' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code, str(trained / "classifier.pt")], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.stdout.splitlines()[-1] == "False"


def test_sample_one_name_per_start_letter(trained, capsys):
    generator = str(trained / "generator.pt")

    def sampled(*argv):
        return in_process(sample, capsys, "--checkpoint", generator, *argv)

    result = sampled("russian", "RUS", "--seed", "1", "--max-length", "12")
    assert result.returncode == 0, result.stderr
    names = result.stdout.splitlines()
    assert [n[0] for n in names] == ["R", "U", "S"]
    assert all(1 <= len(n) <= 12 for n in names)
    again = sampled("Russian", "RUS", "--seed", "1", "--max-length", "12")
    assert again.stdout == result.stdout
    greedy = sampled("Russian", "rrr", "--greedy").stdout.splitlines()
    assert len(greedy) == 1 and BEAM_LINE.match(greedy[0]).group(2)[0] == "R"  # one greedy name per distinct letter
    assert greedy == sampled("Russian", "R", "--beam", "1").stdout.splitlines()
    free = sampled("Japanese", "-n", "4", "--seed", "2").stdout.splitlines()
    assert len(free) == 4 and all(n[0].isupper() for n in free)
    shouted = sampled("RUSSIAN", "rus", "--seed", "1", "--max-length", "12")
    assert shouted.stdout == result.stdout  # any letter case in, the same names out


BEAM_LINE = re.compile(r"^\((-\d+\.\d\d)\) (\S.*)$")


def test_sample_prefix_novel_beam_and_top_k(trained, capsys):
    generator = str(trained / "generator.pt")

    def sampled(*argv):
        return in_process(sample, capsys, "--checkpoint", generator, *argv)

    prefixed = sampled("Russian", "--prefix", "iVA", "-n", "4", "--seed", "3")
    assert prefixed.returncode == 0, prefixed.stderr
    names = prefixed.stdout.splitlines()
    assert len(names) == 4 and all(name.startswith("Iva") for name in names)
    assert names == sampled("Russian", "--prefix", "Iva", "-n", "4", "--seed", "3").stdout.splitlines()
    dataset = load_dataset()
    known = set(load_checkpoint(generator, "generator")["known_names"])  # the data set and the real names it trained on
    data_set = {fold(name) for name, _ in dataset.pairs}
    real_train = {fold(name) for name, _ in in_split(load_real_names(dataset), "train")}
    assert data_set <= known <= data_set | real_train and known - data_set
    novel = sampled("Italian", "-n", "20", "--seed", "4")  # new names by default
    assert novel.returncode == 0 and novel.stdout.splitlines()
    assert not {fold(name) for name in novel.stdout.splitlines()} & known
    greedy_known = sampled("Russian", "I", "--top-k", "1", "--known")
    assert greedy_known.returncode == 0 and len(greedy_known.stdout.splitlines()) == 1
    beam = sampled("Irish", "O", "--beam", "4").stdout.splitlines()
    scores = [float(BEAM_LINE.match(line).group(1)) for line in beam]
    names = [BEAM_LINE.match(line).group(2) for line in beam]
    assert len(beam) == 4 and scores == sorted(scores, reverse=True) and len(set(names)) == 4
    assert all(name.startswith("O") for name in names)
    assert sampled("Irish", "O", "--greedy").stdout.splitlines() == beam[:1]
    top_one = sampled("Irish", "OOO", "--top-k", "1", "--seed", "5", "--known")
    assert len(set(top_one.stdout.splitlines())) == 1  # the likeliest letter each time: greedy decoding, one name
    top_k = load_checkpoint(trained / "generator.pt", "generator")["top_k"]
    default = sampled("German", "-n", "12", "--seed", "6").stdout
    assert default == sampled("German", "-n", "12", "--seed", "6",
                          "--top-k", str(top_k)).stdout  # the checkpoint's top-k unless one is given
    assert default != sampled("German", "-n", "12", "--seed", "6",
                          "--top-k", "1" if top_k != 1 else "2").stdout


def test_samples_are_no_longer_than_the_languages_longest_name_but_keep_a_longer_prefix(trained):
    generator = str(trained / "generator.pt")
    longest = learn_lengths(load_dataset())["Vietnamese"][1]  # six letters: Nguyen
    hot = run("sample.py", "--checkpoint", generator, "Vietnamese", "-n", "30", "--temperature", "2", "--seed", "1")
    assert hot.returncode == 0 and max(len(name) for name in hot.stdout.splitlines()) <= longest
    beam = run("sample.py", "--checkpoint", generator, "Vietnamese", "N", "--beam", "5").stdout.splitlines()
    assert max(len(BEAM_LINE.match(line).group(2)) for line in beam) <= longest
    long_prefix = "Nguyenvan"
    kept = run("sample.py", "--checkpoint", generator, "Vietnamese", "--prefix", long_prefix, "-n", "2", "--seed", "1",
               "--known")
    assert kept.stdout.splitlines() == [long_prefix] * 2




def test_sample_draws_afresh_without_a_seed_and_apart_with_two(trained, capsys):
    unseeded = [sample_names(trained / "generator.pt", capsys, "Russian", "-n", "5", "--temperature", "1.5")
                for _ in range(2)]
    assert unseeded[0] != unseeded[1]
    seeded = [sample_names(trained / "generator.pt", capsys, "Russian", "-n", "5", "--seed", seed) for seed in "12"]
    assert seeded[0] != seeded[1] and all(len(names) == 5 for names in seeded)


def test_sample_defaults_to_the_temperature_and_top_k_its_checkpoint_holds(trained, tmp_path, capsys):
    checkpoint = load_checkpoint(trained / "generator.pt", "generator")
    checkpoint.update(temperature=1.9, top_k=2)  # neither a default of sample.py's nor of the grid's
    torch.save(checkpoint, tmp_path / "generator.pt")

    def names(*flags):
        return sample_names(tmp_path / "generator.pt", capsys, "Italian", "-n", "8", "--seed", "4", "--known", *flags)

    assert names() == names("--temperature", "1.9", "--top-k", "2")
    assert names() != names("--temperature", "0.5", "--top-k", "2")
    assert names() != names("--temperature", "1.9", "--top-k", "0")


def test_a_generator_without_letter_counts_trains_and_answers(tmp_path):
    result = run("train.py", "--model", "generator", "--dry-run", "--hidden-size", "16", "--count-order", "0",
                 "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert float(load_checkpoint(tmp_path / "generator.pt", "generator")["state_dict"]["counts_share"]) == 0
    names = run("sample.py", "--checkpoint", str(tmp_path / "generator.pt"), "German", "-n", "3", "--seed", "1")
    assert names.returncode == 0 and len(names.stdout.splitlines()) == 3


def test_sample_errors(trained, tmp_path, capsys):
    generator = str(trained / "generator.pt")

    def sampled(*argv):
        return in_process(sample, capsys, "--checkpoint", generator, *argv)

    unknown = sampled("Klingon")
    assert unknown.returncode == 2 and "Russian" in unknown.stderr and unknown.stderr.count("\n") == 1
    bad_letter = sampled("Russian", "R2")
    assert bad_letter.returncode == 2 and bad_letter.stderr.count("\n") == 1
    missing = in_process(sample, capsys, "--checkpoint", str(tmp_path / "none.pt"), "Russian")
    assert missing.returncode == 1 and "python train.py" in missing.stderr
    for flags in (["--temperature", "0"], ["--temperature", "1e-320"], ["--seed", str(2**64)], ["--prefix", "Iv4"],
                  ["--prefix", "Iva", "RUS"], ["--beam", "0"], ["--top-k", "-1"], ["-n", "0"], ["--prefix", "a" * 21],
                  ["--greedy", "--beam", "2"]):
        bad = sampled("Russian", *flags)
        assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr, flags


def test_default_paths_are_beside_the_code_and_given_paths_beside_the_user(tmp_path):
    # one rule: data/names, checkpoints/ and the page are found beside the scripts from any folder;
    # a path the user gives is read from the folder they are in
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = run("train.py", "--model", "classifier", "--dry-run", "--hidden-size", "8", "--out", "mine",
                 cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    assert (elsewhere / "mine" / "classifier.pt").is_file()
    predicted = run("predict.py", "--checkpoint", "mine/classifier.pt", "Hinton", cwd=elsewhere)
    assert predicted.returncode == 0 and LINE.match(predicted.stdout.splitlines()[0])
    help_text = run("predict.py", "--help", cwd=elsewhere).stdout
    assert "checkpoints/classifier.pt beside this script" in help_text
    assert CLASSIFIER_PATH == ROOT / "checkpoints" / "classifier.pt" and GENERATOR_PATH.parent == ROOT / "checkpoints"


def test_train_refuses_an_output_path_that_is_a_file_before_training(tmp_path):
    target = tmp_path / "taken"
    target.write_text("keep me")
    result = run("train.py", "--dry-run", "--out", str(target))
    assert result.returncode == 2 and "not a folder" in result.stderr and result.stdout == ""
    assert target.read_text() == "keep me"


def test_predict_explain_in_text_and_json(trained):
    checkpoint = str(trained / "classifier.pt")
    text = run("predict.py", "--checkpoint", checkpoint, "--explain", "Hinton")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    top = LINE.match(lines[0]).group(2)
    assert lines[3] == f"Hinton -> {top}"
    assert lines[4].split() == list("Hinton") and len(lines[5].split()) == 6
    assert lines[6].startswith("  like: ") and lines[6].count("(") == 3
    record = json.loads(run("predict.py", "--checkpoint", checkpoint, "--explain", "--json", "Hinton").stdout)
    scores = [f"{score:+.1f}" for _, score in record["explain"]["letters"]]
    assert lines[5].split() == scores
    plain = run("predict.py", "--checkpoint", checkpoint, "Hinton")
    assert plain.stdout.splitlines() == lines[:3]  # without --explain, only the usual lines


@pytest.mark.parametrize("flags", [["--count-order", "9"], ["--lr", "0"], ["--dropout", "1"], ["--epochs", "0"],
                                   ["--batch-size", "0"], ["--real-weight", "11"], ["--device", "tpu"]])
def test_train_refuses_bad_settings_in_one_line(tmp_path, flags):
    result = run("train.py", "--dry-run", "--out", str(tmp_path / "out"), *flags)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and flags[0] in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("script", ["train.py", "predict.py", "sample.py", "server.py"])
def test_a_device_that_is_not_here_is_one_line_and_exit_2_before_any_work(script, tmp_path):
    missing = "mps" if torch.cuda.is_available() else "cuda"
    if getattr(torch.backends, missing).is_available() if missing == "mps" else torch.cuda.is_available():
        pytest.skip(f"this machine has {missing}")
    given = {"train.py": ["--out", str(tmp_path / "out")], "predict.py": ["Hinton"], "sample.py": ["Russian"],
             "server.py": ["--port", "0"]}[script]
    result = run(script, "--device", missing, *given, timeout=60)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and f"'{missing}'" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert not (tmp_path / "out").exists()
