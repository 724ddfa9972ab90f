"""A JSON service for the classifier and the generator, on http://localhost:5533/.

    python server.py                 # then visit http://localhost:5533/Hinton
    python server.py --port 0        # any free port; the address is printed

GET /<name>                          languages for a surname, best first (?n=1..languages), and "sure"
GET /sample/<Language>               invented names (?start=RUS&n=5&temperature=0.8&seed=1, ?prefix=, &beam=)
GET /api/languages, /api/limits      what the service knows, and the limits on what it is asked
GET /api/health                      whether it is up
GET /                                a page to try both in a browser (JSON description for API clients)
"""
from __future__ import annotations

import argparse
import functools
import json
import queue
import signal
import sys
import threading
from concurrent.futures import Future
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import torch

from answers import NearestNames, answers, explanations, in_range, invented, run_script, sample_request
from data import (DEFAULT_TOP, MAX_BEAM, MAX_SAMPLES, ArgumentParser, DataError, UnknownLanguage, limits,
                  usable_name)
from model import (CLASSIFIER_PATH, GENERATOR_PATH, CheckpointError, Classifier, add_device_argument, classify,
                   load_model)

PAGE = Path(__file__).resolve().parent / "static" / "index.html"
SOCKET_TIMEOUT = 10  # seconds a stalled client may hold its connection
LISTEN_BACKLOG = 1024  # connections the kernel may hold before accept(); Python's default of 5 drops crowds
MAX_REQUEST_BODY = 64 * 1024  # a GET body up to this is read and ignored; a larger or chunked one closes
CACHE_SIZE = 5_000  # distinct names whose answers are kept (about 14 MB when full): a repeated name is classified once
JSON_TYPE = "application/json; charset=utf-8"
PREDICT_QUERY = ("n", "explain")  # the query parameters each endpoint takes; any other is a 400
SAMPLE_QUERY = ("start", "prefix", "n", "temperature", "top_k", "seed", "novel", "beam", "greedy")
ENDPOINTS = {
    "GET /<name>": f"languages for a surname, best first; ?n=1..number of languages (default {DEFAULT_TOP}); "
                   "\"sure\" says whether the top one can be trusted; ?explain=1 adds letter scores (how far "
                   "the top language's log-odds fall without each letter) and similar names",
    "GET /sample/<Language>": f"invented names; ?start=RUS (one per letter) or ?n=1..{MAX_SAMPLES}, ?prefix=Iva, "
                              "&temperature=, &top_k=, &seed=, &novel=0 (names it trained on may come too), "
                              f"&beam=1..{MAX_BEAM} (the likeliest names, [log-probability, name]), &greedy=1",
    "GET /api/languages": "the languages both models know",
    "GET /api/limits": "the limits on names, counts, temperature and seed",
    "GET /api/health": "status of the service",
}


class HTTPError(Exception):
    def __init__(self, status: HTTPStatus, message: str):
        super().__init__(message)
        self.status = status


class Batcher:
    """One worker thread that answers every name waiting at that moment in one forward pass, on the model's device.
    Request threads touch no tensors: among sixteen threads, every torch call's hand-over of the interpreter lock
    waits."""

    def __init__(self, model: Classifier, languages: list[str], sure_from: float, max_batch: int = 512):
        self.model, self.languages, self.sure_from, self.max_batch = model, languages, sure_from, max_batch
        self.waiting: queue.Queue[tuple[str, Future]] = queue.Queue()
        threading.Thread(target=self._work, daemon=True, name="classifier").start()

    def ranked(self, name: str) -> tuple[tuple[tuple[float, str], ...], bool]:
        """Every language for a normalised name as (log-probability, language), best first, and whether it is sure:
        tuples, which the garbage collector stops walking, so thousands in the cache do not lengthen its pauses."""
        future: Future = Future()
        self.waiting.put((name, future))
        return future.result(timeout=30)

    def _work(self) -> None:
        while True:
            batch = [self.waiting.get()]
            while len(batch) < self.max_batch:
                try:
                    batch.append(self.waiting.get_nowait())
                except queue.Empty:
                    break
            try:
                names = [name for name, _ in batch]
                records = answers(names, names, classify(self.model, names), self.languages, len(self.languages),
                                  self.sure_from)
                for (_, future), record in zip(batch, records):
                    future.set_result((tuple(map(tuple, record["result"])), record["sure"]))
            except Exception as error:  # never leave a request waiting forever
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)


class Service:
    """What the handlers need: both models, loaded once, and the answers they give."""

    def __init__(self, classifier_path: str, generator_path: str, cache_size: int = CACHE_SIZE,
                 device: str | torch.device = "cpu"):
        classifier, classifier_checkpoint = load_model(classifier_path, "classifier", device)
        self.generator, generator_checkpoint = load_model(generator_path, "generator", device)
        self.languages: list[str] = classifier_checkpoint["languages"]
        if generator_checkpoint["languages"] != self.languages:
            raise CheckpointError("the classifier and generator checkpoints know different languages: "
                                  "run `python train.py` again")
        self.sure_from: float = classifier_checkpoint["sure_threshold"]
        self.batcher = Batcher(classifier, self.languages, self.sure_from)
        # Least recently used names drop out first; keyed by the name as the classifier reads it (one case).
        self.ranked = functools.lru_cache(maxsize=cache_size)(self.batcher.ranked)
        self.classifier = classifier
        self.generator_checkpoint = generator_checkpoint
        self.generator_lock = threading.Lock()
        try:  # built once, here: a pass over the training names (see bench.py for its cost)
            self.known: NearestNames | None = NearestNames.of(classifier, classifier_checkpoint)
            self.known_error = ""
        except DataError as error:
            self.known, self.known_error = None, f"explanations need the training names: {error}"

    def predict(self, raw_name: str, query: dict[str, list[str]]) -> dict:
        top = number(query, "n")
        try:
            top = DEFAULT_TOP if top is None else in_range("n", top, (1, len(self.languages)))
            name = usable_name(raw_name)
        except DataError as error:
            raise HTTPError(HTTPStatus.BAD_REQUEST, str(error)) from None
        explain = flag(query, "explain")
        ranked, sure = self.ranked(self.classifier.reads(name))
        record = {"name": raw_name, "normalised": name, "result": [list(pair) for pair in ranked[:top]], "sure": sure}
        if explain:
            if self.known is None:
                raise HTTPError(HTTPStatus.SERVICE_UNAVAILABLE, self.known_error)
            record["explain"] = explanations(self.classifier, [name], self.known)[0]
        return record

    def sample(self, raw_language: str, query: dict[str, list[str]]) -> dict:
        beam = 1 if flag(query, "greedy") else number(query, "beam")
        novel = flag(query, "novel", default="1")
        try:
            request = sample_request(self.generator_checkpoint, raw_language, single(query, "start", ""),
                                     single(query, "prefix", ""), number(query, "n"),
                                     number(query, "temperature", float), number(query, "top_k"),
                                     number(query, "seed"), beam, novel)
        except UnknownLanguage as error:
            raise HTTPError(HTTPStatus.NOT_FOUND, str(error)) from None
        except DataError as error:
            raise HTTPError(HTTPStatus.BAD_REQUEST, str(error)) from None
        with self.generator_lock:
            return invented(self.generator, self.generator_checkpoint, request)


def known_only(query: dict[str, list[str]], known: tuple[str, ...], endpoint: str) -> dict[str, list[str]]:
    """The query, if it asks only for what endpoint takes: a misspelt `?temp=0.5` is a 400, not silently ignored."""
    unknown = [key for key in query if key not in known]
    if unknown:
        raise HTTPError(HTTPStatus.BAD_REQUEST, f"unknown query parameter {unknown[0]!r}; {endpoint} takes "
                                                f"{', '.join(known)}")
    return query


def single(query: dict[str, list[str]], key: str, default: str) -> str:
    values = query.get(key)
    if values is None:
        return default
    if len(values) > 1:
        raise HTTPError(HTTPStatus.BAD_REQUEST, f"give {key} once")
    return values[0]


def flag(query: dict[str, list[str]], key: str, default: str = "0") -> bool:
    """A 0/1 query value, default if absent; anything else is a 400."""
    value = single(query, key, default)
    if value not in ("0", "1"):
        raise HTTPError(HTTPStatus.BAD_REQUEST, f"{key} must be 0 or 1")
    return value == "1"


def number(query: dict[str, list[str]], key: str, kind: type = int) -> int | float | None:
    """A query value parsed as kind (int or float), None if absent; its limits are checked by answers.py."""
    text = single(query, key, "")
    if not text:
        return None
    try:
        return kind(text)
    except ValueError:
        expected = "a whole number" if kind is int else "a number"
        raise HTTPError(HTTPStatus.BAD_REQUEST, f"{key} must be {expected}") from None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    disable_nagle_algorithm = True  # else small header and body writes wait ~40 ms for an ACK
    timeout = SOCKET_TIMEOUT
    server_version = "surnames/1.0"
    service: Service
    page: bytes
    quiet = False

    def do_GET(self) -> None:
        self.respond(head_only=False)

    def do_HEAD(self) -> None:
        self.respond(head_only=True)

    def respond(self, head_only: bool) -> None:
        self.skip_body()
        if self.path.split("?")[0] == "/" and self.wants_html():
            self.send_body(HTTPStatus.OK, self.page, "text/html; charset=utf-8", head_only)
            return
        try:
            status, body = HTTPStatus.OK, self.route()
        except HTTPError as error:
            status, body = error.status, {"error": str(error)}
        except Exception as error:  # a bug must not reach the client as a traceback
            self.log_error("internal error on %r: %s: %s", self.path, type(error).__name__, error)
            status, body = HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "internal error"}
        self.send_json(status, body, head_only)

    def parse_request(self) -> bool:
        """HTTP/0.9 ("GET /x" with no version) would be answered without a status line: refuse it."""
        if not super().parse_request():
            return False
        if self.request_version == "HTTP/0.9":
            self.send_error(HTTPStatus.BAD_REQUEST, "a request line needs an HTTP version")
            return False
        return True

    def skip_body(self) -> None:
        """A GET or HEAD body is never meant for us, but must not be read as the next request."""
        length = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding") or (length is not None and not length.strip().isdigit()):
            self.close_connection = True
        elif length is not None and int(length) > 0:
            if int(length) > MAX_REQUEST_BODY:
                self.close_connection = True
            else:
                self.rfile.read(int(length))

    def route(self) -> dict:
        url = urlsplit(self.path)
        try:
            segments = [unquote(s, errors="strict") for s in url.path.split("/")[1:]]
            query = parse_qs(url.query, keep_blank_values=True, errors="strict")
        except UnicodeDecodeError:
            raise HTTPError(HTTPStatus.BAD_REQUEST, "the address is not valid UTF-8") from None
        if segments == [""]:
            return {"service": "surname classifier and generator", "endpoints": ENDPOINTS}
        if segments == ["api", "languages"]:
            return {"languages": self.service.languages}
        if segments == ["api", "limits"]:
            return limits()
        if segments == ["api", "health"]:
            return {"status": "ok", "languages": len(self.service.languages)}
        if len(segments) == 2 and segments[0] == "sample" and segments[1]:
            return self.service.sample(segments[1], known_only(query, SAMPLE_QUERY, "/sample/<Language>"))
        if len(segments) == 1 and segments[0] != "favicon.ico":
            return self.service.predict(segments[0], known_only(query, PREDICT_QUERY, "/<name>"))
        raise HTTPError(HTTPStatus.NOT_FOUND, f"no such endpoint: {url.path}; see GET /")

    def wants_html(self) -> bool:
        """Browsers ask for text/html first; API clients (curl's */*, application/json) get JSON."""
        accept = self.headers.get("Accept", "")
        return "text/html" in accept and "application/json" not in accept.split(",")[0]

    def send_json(self, status: int, body: dict, head_only: bool = False) -> None:
        self.send_body(status, json.dumps(body, ensure_ascii=False).encode("utf-8"), JSON_TYPE, head_only)

    def send_body(self, status: int, payload: bytes, content_type: str, head_only: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        if status == HTTPStatus.METHOD_NOT_ALLOWED:
            self.send_header("Allow", "GET, HEAD")
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if not head_only:
            self.wfile.write(payload)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Errors found by http.server itself (bad request line, unknown method) as JSON too."""
        if code == HTTPStatus.NOT_IMPLEMENTED:  # any method but GET and HEAD; its body, if any, is left unread
            code, message = HTTPStatus.METHOD_NOT_ALLOWED, f"method {self.command} not allowed; use GET or HEAD"
        self.close_connection = True
        self.request_version = self.protocol_version  # answer garbage with a real status line, not HTTP/0.9
        head_only = self.requestline.startswith("HEAD ")  # even a HEAD we could not parse gets no body
        self.send_json(code, {"error": message or HTTPStatus(code).phrase}, head_only=head_only)

    def log_request(self, code="-", size="-") -> None:
        if not self.quiet:  # --quiet silences the access log only; errors are still logged
            super().log_request(code, size)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = LISTEN_BACKLOG

    def handle_error(self, request, client_address) -> None:
        """A client that hung up before its answer is one log line, not a traceback; a bug keeps its traceback."""
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):
            sys.stderr.write(f"{client_address[0]} - - client went away: {type(error).__name__}\n")
        else:
            super().handle_error(request, client_address)


def make_server(host: str, port: int, service: Service, quiet: bool = False) -> ThreadingHTTPServer:
    handler = type("BoundHandler", (Handler,), {"service": service, "quiet": quiet, "page": PAGE.read_bytes()})
    return Server((host, port), handler)


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description="Serve the classifier and generator as JSON.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=5533, help="port; 0 picks a free one (default: 5533)")
    parser.add_argument("--quiet", action="store_true", help="no access log on stderr")
    parser.add_argument("--cache", type=int, default=CACHE_SIZE, help="distinct names whose answers are kept, "
                        f"least recently asked dropped first; 0 for none (default: {CACHE_SIZE:,})")
    parser.add_argument("--classifier", default=str(CLASSIFIER_PATH),
                        help="classifier checkpoint (default: checkpoints/classifier.pt beside this script)")
    parser.add_argument("--generator", default=str(GENERATOR_PATH),
                        help="generator checkpoint (default: checkpoints/generator.pt beside this script)")
    add_device_argument(parser)
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error("--port must be between 0 and 65535")
    if not 0 <= args.cache <= 10_000_000:
        parser.error("--cache must be between 0 and 10000000")
    torch.set_num_threads(1)  # requests are small; more threads only contend for two cores
    return run_script(lambda: serve(args))


def serve(args: argparse.Namespace) -> int:
    """Load both models (a CheckpointError refuses to start), then answer until SIGINT or SIGTERM."""
    service = Service(args.classifier, args.generator, args.cache, args.device)
    try:
        server = make_server(args.host, args.port, service, args.quiet)
    except OSError as error:
        print(f"error: cannot listen on {args.host}:{args.port}: {error.strerror}", file=sys.stderr)
        return 1

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    host, port = server.server_address[:2]
    print(f"serving on http://{host}:{port}/ (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
