"""The real server as a subprocess on a free port, spoken to over HTTP."""
import http.client
import json
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from data import DEFAULT_TOP, MAX_NAME_LENGTH, MAX_SAMPLES, TEMPERATURE_RANGE
from helpers import ROOT, get, get_json


def test_classify_a_name(server):
    status, body = get_json(server, "/Hinton")
    assert status == 200 and body["name"] == "Hinton" and body["normalised"] == "Hinton"
    assert len(body["result"]) == DEFAULT_TOP and isinstance(body["sure"], bool)
    values = [value for value, _ in body["result"]]
    assert values == sorted(values, reverse=True)
    status, body = get_json(server, "/Hinton?n=18")
    assert status == 200 and len(body["result"]) == 18
    for spelling in ("HINTON", "hinton", "hInToN"):
        assert get_json(server, f"/{spelling}?n=18")[1]["result"] == body["result"]


def test_percent_encoded_utf8_is_normalised(server):
    status, body = get_json(server, "/%C5%9Alus%C3%A0rski")
    assert status == 200 and body["name"] == "Ślusàrski" and body["normalised"] == "Slusarski"
    status, plain = get_json(server, "/Slusarski")
    assert plain["result"] == body["result"]


def test_sample_and_languages(server):
    status, languages = get_json(server, "/api/languages")
    assert status == 200 and "Russian" in languages["languages"]
    status, body = get_json(server, "/sample/russian?start=RUS&seed=1&temperature=0.8")
    assert status == 200 and body["language"] == "Russian"
    assert [name[0] for name in body["names"]] == ["R", "U", "S"]
    assert get_json(server, "/sample/russian?start=RUS&seed=1&temperature=0.8")[1] == body
    status, body = get_json(server, "/sample/Japanese?n=4")
    assert status == 200 and len(body["names"]) == 4
    assert get_json(server, "/api/health") == (200, {"status": "ok", "languages": len(languages["languages"])})
    status, limits = get_json(server, "/api/limits")
    assert status == 200 and limits["name_length"] == MAX_NAME_LENGTH and limits["samples"] == MAX_SAMPLES
    assert limits["temperature"] == list(TEMPERATURE_RANGE) and limits["top"] == DEFAULT_TOP
    status, body = get_json(server, "/")
    assert status == 200 and "endpoints" in body


@pytest.mark.parametrize("path, status", [
    ("/123", 400), ("/%20-%20", 400), ("/" + "a" * (MAX_NAME_LENGTH + 1), 400), ("/Hinton?n=0", 400),
    ("/Hinton?n=19", 400), ("/sample/Russian?temperature=0.05", 400), ("/sample/Russian?temperature=1e-320", 400),
    ("/sample/Russian?n=" + str(MAX_SAMPLES + 1), 400), ("/sample/Russian?seed=" + str(2**64), 400),
    ("/Hinton?n=abc", 400), ("/%FF%FE", 400), ("/sample/Russian?start=R1", 400), ("/sample/Russian?n=0", 400),
    ("/sample/Russian?temperature=nan", 400), ("/sample/Russian?temperature=-1", 400), ("/sample/Russian?seed=x", 400),
    ("/sample/Klingon", 404), ("/a/b/c", 404), ("/api/nothing", 404), ("/favicon.ico", 404),
])
def test_errors_are_json(server, path, status):
    got, body = get_json(server, path)
    assert got == status and isinstance(body["error"], str) and body["error"]


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "BREW"])
def test_other_methods_are_405(server, method):
    status, body = get_json(server, "/Hinton", method=method)
    assert status == 405 and "error" in body


def test_head_has_the_headers_of_get_and_no_body(server):
    connection = http.client.HTTPConnection(server["host"], server["port"], timeout=10)
    connection.request("HEAD", "/Hinton")
    response = connection.getresponse()
    assert response.status == 200 and response.read() == b""
    _, headers, body = get(server, "/Hinton")
    assert int(response.headers["Content-Length"]) == len(body)
    connection.close()


def test_keep_alive_serves_many_requests_on_one_connection(server):
    connection = http.client.HTTPConnection(server["host"], server["port"], timeout=10)
    for path in ["/Hinton", "/123", "/sample/Russian?n=2", "/Nakamura"]:
        connection.request("GET", path)
        response = connection.getresponse()
        json.loads(response.read())
        assert not response.will_close
    sock = connection.sock
    connection.request("GET", "/api/health")
    assert connection.getresponse().status == 200 and connection.sock is sock
    connection.close()


def test_concurrent_interleaved_requests_all_answered_right(server):
    names = ["Hinton", "Nakamura", "Ivanov", "Schmidt", "Rossi", "Nguyen", "Kim", "O'Brien"]
    expected = {name: get_json(server, f"/{name}?n=3")[1]["result"] for name in names}
    failures, answered = [], []

    def client(offset):
        connection = http.client.HTTPConnection(server["host"], server["port"], timeout=10)
        for i in range(40):
            name = names[(i + offset) % len(names)]
            connection.request("GET", f"/{name}?n=3")
            body = json.loads(connection.getresponse().read())
            if body.get("result") != expected[name]:
                failures.append((name, body))
            answered.append(name)
        connection.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures and len(answered) == 8 * 40  # a client thread that died would leave requests unanswered


def test_a_stalled_or_vanished_client_does_not_block_others(server):
    stalled = socket.create_connection((server["host"], server["port"]))
    stalled.sendall(b"GET /Hin")  # never finishes its request
    vanished = socket.create_connection((server["host"], server["port"]))
    vanished.sendall(b"GET /Hinton HTTP/1.1\r\nHost: x\r\n\r\n")
    vanished.close()  # gone before the answer
    garbage = socket.create_connection((server["host"], server["port"]))
    garbage.sendall(b"\x00\xffnonsense\r\n\r\n")
    reply = b""
    while chunk := garbage.recv(4096):  # the server closes after an error
        reply += chunk
    assert reply.startswith(b"HTTP/1.1 400") and b'"error"' in reply
    garbage.close()
    started = time.time()
    assert get_json(server, "/Hinton")[0] == 200
    assert time.time() - started < 5
    stalled.close()
    assert server["process"].poll() is None


def test_access_log_and_clean_stop(trained):
    process = subprocess.Popen(
        [sys.executable, "-u", "server.py", "--port", "0", "--classifier", str(trained / "classifier.pt"),
         "--generator", str(trained / "generator.pt")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    address = process.stdout.readline().split("http://")[1].split("/")[0]
    urllib.request.urlopen(f"http://{address}/Hinton", timeout=10).read()
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=10)
    assert process.returncode == 0 and "stopped" in out
    assert '"GET /Hinton HTTP/1.1" 200' in err and "Traceback" not in err


def test_missing_checkpoint_is_one_line_and_exit_1(tmp_path):
    result = subprocess.run([sys.executable, "server.py", "--port", "0", "--classifier", str(tmp_path / "x.pt")],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "python train.py" in result.stderr and result.stderr.count("\n") == 1
