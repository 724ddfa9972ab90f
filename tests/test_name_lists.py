"""Lists of names as people hand them over: streamed a chunk at a time, CSV in and out, progress, and output that
cannot be written (a full disk, a closed pipe) as one line."""
import csv
import io
import json
import os
import subprocess
import sys

import pytest

import predict
from data import DataError, write_file
from helpers import ROOT, run

NAMES = ["Hinton", "Nakamura", "", "Ivanov", "Hinton", "12", "Schmidt", "O'Brien", "Ślusàrski", "x" * 60, "Rossi"]


def json_lines(trained, names, monkeypatch, capsys, chunk: int) -> list[dict]:
    monkeypatch.setattr(predict, "FIRST_CHUNK", chunk)
    monkeypatch.setattr(predict, "CHUNK", chunk)
    with names.open() as stdin:
        monkeypatch.setattr(sys, "stdin", stdin)
        assert predict.main(["--checkpoint", str(trained / "classifier.pt"), "--json", "-n", "3", "-"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_the_answers_are_the_same_at_any_chunk_size(trained, tmp_path, monkeypatch, capsys):
    names = tmp_path / "names.txt"
    names.write_text("\n".join(NAMES) + "\n", encoding="utf-8")
    whole = json_lines(trained, names, monkeypatch, capsys, 8192)
    assert [record["name"] for record in whole] == NAMES  # one line per input line, duplicates and bad ones too
    assert ["error" in record for record in whole] == [False, False, True, False, False, True, False, False, False,
                                                      True, False]
    for chunk in (1, 2, 3):
        records = json_lines(trained, names, monkeypatch, capsys, chunk)
        assert [record.get("error") for record in records] == [record.get("error") for record in whole]
        for mine, theirs in zip(records, whole):
            if "result" in theirs:  # a batch's size changes only the float rounding
                assert [language for _, language in mine["result"]] == [language for _, language in theirs["result"]]
                assert [value for value, _ in mine["result"]] == pytest.approx([v for v, _ in theirs["result"]],
                                                                               abs=1e-3)


def test_answers_come_before_the_input_ends(trained):
    """A chunk's lines are written before the next is read: the first answer arrives while stdin is still open."""
    process = subprocess.Popen([sys.executable, "predict.py", "--checkpoint", str(trained / "classifier.pt"),
                                "--json", "-"], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        process.stdin.write(("Hinton\n" * predict.FIRST_CHUNK).encode())
        process.stdin.flush()
        first = json.loads(process.stdout.readline())
        assert first["name"] == "Hinton" and process.poll() is None  # still waiting for the rest
    finally:
        process.stdin.close()
        process.stdout.read()  # the rest of the chunk's answers
        process.wait(timeout=60)
    assert process.returncode == 0


def test_chunks_grow_to_their_largest_and_read_lazily():
    read = []

    def names():
        for k in range(12):
            read.append(k)
            yield k

    chunks = predict.chunks(names(), 2, 4)
    assert next(chunks) == [0, 1] and read == [0, 1]  # nothing read ahead of the chunk in hand
    assert next(chunks) == [2, 3, 4, 5] and read == [0, 1, 2, 3, 4, 5]
    assert list(chunks) == [[6, 7, 8, 9], [10, 11]]  # never larger than the largest


CSV_TEXT = ('\ufeffid,surname,note\r\n1,Hinton,"a, b"\r\n2,"O\'Neil","say ""hi""\nthere"\r\n3,,empty\r\n'
            '4,Müller\r\n5,12345,digits\r\n')


def test_csv_keeps_every_row_and_column_and_adds_the_answer(trained):
    result = run("predict.py", "--checkpoint", str(trained / "classifier.pt"), "--csv", "-", "--column", "surname",
                 "-n", "2", stdin=CSV_TEXT)
    assert result.returncode == 0, result.stderr
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0] == ["id", "surname", "note", "language", "log_probability", "sure", "error", "language_2",
                       "log_probability_2"]  # the byte-order mark is not part of the first column's name
    given = list(csv.reader(io.StringIO(CSV_TEXT.removeprefix("\ufeff"))))
    assert len(rows) == len(given)  # rows in = rows out, in order
    for row, original in zip(rows[1:], given[1:]):
        assert row[:len(original)] == original and len(row) == 9
    assert rows[2][2] == 'say "hi"\nthere'  # a quoted field with quotes and a line break inside comes back whole
    answered = [row for row in rows[1:] if not row[6]]
    assert [row[0] for row in answered] == ["1", "2", "4"]
    single = json.loads(run("predict.py", "--checkpoint", str(trained / "classifier.pt"), "--json", "-n", "2",
                            "Hinton").stdout)
    assert rows[1][3:6] == [single["result"][0][1], str(single["result"][0][0]), str(single["sure"]).lower()]
    assert rows[1][7:] == [single["result"][1][1], str(single["result"][1][0])]
    for row in rows[1:]:
        if row[6]:  # a row whose name cannot be used: an error, and no answer
            assert row[3:6] == ["", "", ""] and row[7:] == ["", ""]
    assert "no letters" in rows[3][6] and "no letters" in rows[5][6]


def test_csv_from_a_file_with_lf_ends_and_one_language_by_default(trained, tmp_path):
    table = tmp_path / "members.csv"
    table.write_text("surname\nKowalski\nTanaka\n", encoding="utf-8")
    result = run("predict.py", "--checkpoint", str(trained / "classifier.pt"), "--csv", str(table), "--column",
                 "surname")
    assert result.returncode == 0, result.stderr
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0] == ["surname", "language", "log_probability", "sure", "error"] and len(rows) == 3


def test_a_csv_column_that_is_not_there_names_the_columns_that_are(trained, tmp_path):
    result = run("predict.py", "--checkpoint", str(trained / "classifier.pt"), "--csv", "-", "--column", "name",
                 stdin=CSV_TEXT)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "id, surname, note" in result.stderr
    missing = run("predict.py", "--checkpoint", str(trained / "classifier.pt"), "--csv", str(tmp_path / "no.csv"),
                  "--column", "surname")
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "no.csv" in missing.stderr
    alone = run("predict.py", "--checkpoint", str(trained / "classifier.pt"), "--csv", "-", stdin=CSV_TEXT)
    assert alone.returncode == 2 and alone.stderr.count("\n") == 1


def test_progress_only_when_asked_or_on_a_terminal(trained, tmp_path):
    names = "\n".join(["Hinton", "Tanaka"] * 50) + "\n"
    quiet = run("predict.py", "--checkpoint", str(trained / "classifier.pt"), "--json", "-", stdin=names)
    assert quiet.returncode == 0 and quiet.stderr == ""  # a pipeline's stderr stays quiet
    shown = run("predict.py", "--checkpoint", str(trained / "classifier.pt"), "--json", "--progress", "-",
                stdin=names)
    assert shown.returncode == 0 and shown.stdout == quiet.stdout
    assert shown.stderr.strip().startswith("100 names, ") and "names/s" in shown.stderr  # share: unknown on a pipe
    listed = tmp_path / "names.txt"
    listed.write_text(names)
    with listed.open() as stdin:
        command = [sys.executable, "predict.py", "--checkpoint", str(trained / "classifier.pt"), "--json", "--progress",
                   "-"]
        from_file = subprocess.run(command, cwd=ROOT, stdin=stdin, capture_output=True, text=True, timeout=60)
    assert from_file.stdout == quiet.stdout and from_file.stderr.strip().endswith("names/s, 100% of the input")


@pytest.mark.parametrize("command", [["predict.py", "Hinton"], ["predict.py", "--json", "-"],
                                     ["predict.py", "--csv", "-", "--column", "surname"], ["sample.py", "Russian"]])
def test_output_to_a_full_disk_is_one_line_and_a_non_zero_exit(trained, command):
    checkpoint = trained / ("generator.pt" if command[0] == "sample.py" else "classifier.pt")
    with open("/dev/full", "w") as full:
        result = subprocess.run([sys.executable, *command, "--checkpoint", str(checkpoint)], cwd=ROOT,
                                input="surname\nHinton\n", stdout=full, stderr=subprocess.PIPE, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr == "error: cannot write the output: No space left on device\n"


def test_a_closed_pipe_is_one_line_too(trained):
    process = subprocess.Popen([sys.executable, "predict.py", "--checkpoint", str(trained / "classifier.pt"),
                                "--json", "-"], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    process.stdout.close()  # the reader went away, as `| head -1` does
    _, error = process.communicate(("Hinton\n" * 20_000).encode(), timeout=120)
    assert process.returncode == 1 and error == b"error: cannot write the output: Broken pipe\n"


def test_a_file_that_cannot_be_written_keeps_the_old_one_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    path = tmp_path / "classifier.pt"
    path.write_bytes(b"the old checkpoint")

    def full_disk(**kwargs):  # the temporary file lands on a device that is always full
        (tmp_path / "x.tmp").write_bytes(b"")
        return os.open("/dev/full", os.O_WRONLY), str(tmp_path / "x.tmp")

    monkeypatch.setattr("tempfile.mkstemp", full_disk)
    with pytest.raises(DataError, match="cannot write .*classifier.pt: No space left on device"):
        write_file(path, b"x" * 100_000)
    assert path.read_bytes() == b"the old checkpoint" and sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_train_says_in_one_line_what_it_could_not_write_and_keeps_the_rest(tmp_path):
    out = tmp_path / "out"
    (out / "generator.pt").mkdir(parents=True)  # where the generator's checkpoint should go, a folder
    result = run("train.py", "--dry-run", "--hidden-size", "16", "--count-order", "0", "--out", str(out))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "generator.pt" in result.stderr
    assert not list(out.glob("*.tmp")) and (out / "generator.pt").is_dir()
    # the classifier, trained beside it without letter counts, was saved and answers
    answer = run("predict.py", "--checkpoint", str(out / "classifier.pt"), "--json", "Hinton")
    assert answer.returncode == 0 and json.loads(answer.stdout)["result"]
