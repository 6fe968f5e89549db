"""fetch_data against a local HTTP server on 127.0.0.1 and file:// mirrors, never the internet: placing and verifying
files, refusing a wrong checksum, resuming a dropped download, the offline message; and the manifest against the
real data where it is present."""

from __future__ import annotations

import hashlib
import io
import shutil
import socket
import subprocess
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from lit_edit.data.fetch import fetch, fetch_data, file_problem, target_problem
from lit_edit.data.sources import TARGETS, Download, Target, targets_of
from lit_edit.tasks.registry import TASK_FILES, read_task
from tests.conftest import SHARED_DATA


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Server:
    """Serves ``files`` (URL path → bytes) with HTTP Range support; a path in ``drop_once`` gets its first response
    cut off after half the body (the connection closed), as a dropped download."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.drop_once: set[str] = set()
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.requests.append((self.path, self.headers.get("Range")))
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start = int(self.headers["Range"].split("=")[1].rstrip("-")) if self.headers.get("Range") else 0
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                if self.path in server.drop_once:
                    server.drop_once.discard(self.path)
                    self.wfile.write(body[start:start + (len(body) - start) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(body[start:])

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def make_zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


PLAIN = ("\n".join(f'{{"line": {i}}}' for i in range(3000)) + "\n").encode()
MEMBER = b"a member of an archive\n" * 50
FOLDER = {"dev_1.txt": b'{"n": 1}', "dev_2.txt": b'{"n": 2}', "sub/dev_3.txt": b'{"n": 3}'}


@pytest.fixture
def fixture_targets(tmp_path):
    """A plain file, an archive member and an archive folder (with its checksum listing), and what they hold."""
    listing = tmp_path / "folder.sha256"
    listing.write_text("".join(f"{sha256(data)}  {name}\n" for name, data in FOLDER.items()))
    archive = make_zip({"pack-1234/inner/member.txt": MEMBER, "pack-1234/unrelated.txt": b"not wanted",
                        **{f"pack-1234/data/dev/{name}": data for name, data in FOLDER.items()},
                        "pack-1234/data/train/dev_9.txt": b"not below the folder"})
    served = {"/plainsrc/plain.jsonl": PLAIN, "/packsrc/pack.zip": archive}
    targets = [
        Target("sets/plain.jsonl", (Download("plainsrc", "plain.jsonl"),), size=len(PLAIN), sha256=sha256(PLAIN)),
        Target("sets/member.txt", (Download("packsrc", "pack.zip"),), member="inner/member.txt", size=len(MEMBER),
               sha256=sha256(MEMBER)),
        Target("sets/folder", (Download("packsrc", "pack.zip"),), member="data/dev/", checksums=str(listing)),
    ]
    return targets, served


def assert_all_placed(root: Path) -> None:
    assert (root / "sets/plain.jsonl").read_bytes() == PLAIN
    assert (root / "sets/member.txt").read_bytes() == MEMBER
    assert {p.relative_to(root / "sets/folder").as_posix(): p.read_bytes()
            for p in (root / "sets/folder").rglob("*") if p.is_file()} == FOLDER
    assert not list(root.rglob("*.part")), "no partial file is left behind"
    assert not (root / ".downloads").exists(), "the archive is removed once everything taken from it is in place"


def test_fetches_and_verifies_over_http(server, fixture_targets, tmp_path):
    targets, served = fixture_targets
    server.files.update(served)
    root = tmp_path / "root"
    report = fetch(targets, root, mirror=server.url)
    assert report.failed == [] and report.fetched == [t.path for t in targets]
    assert_all_placed(root)
    assert server.requests.count(("/packsrc/pack.zip", None)) == 1, "one archive download serves both targets"
    before = len(server.requests)
    again = fetch(targets, root, mirror=server.url)
    assert again.present == [t.path for t in targets] and len(server.requests) == before, "nothing is fetched twice"


def test_fetches_from_a_file_url_mirror(fixture_targets, tmp_path):
    targets, served = fixture_targets
    mirror = tmp_path / "mirror"
    for url_path, data in served.items():
        (mirror / url_path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (mirror / url_path.lstrip("/")).write_bytes(data)
    report = fetch(targets, tmp_path / "root", mirror=mirror.as_uri())
    assert report.failed == []
    assert_all_placed(tmp_path / "root")


def test_a_checksum_mismatch_is_refused_and_nothing_is_left_in_place(server, fixture_targets, tmp_path, capsys):
    targets, served = fixture_targets
    tampered = PLAIN.replace(b'"line": 7}', b'"line": 8}')
    assert len(tampered) == len(PLAIN)
    served["/plainsrc/plain.jsonl"] = tampered
    served["/packsrc/pack.zip"] = make_zip({"pack-1234/inner/member.txt": MEMBER[:-1] + b"!",
                                            **{f"pack-1234/data/dev/{n}": d + b" " for n, d in FOLDER.items()}})
    server.files.update(served)
    root = tmp_path / "root"
    report = fetch(targets, root, mirror=server.url)
    assert len(report.failed) == 3 and report.fetched == []
    assert "plain.jsonl" in report.failed[0] and f"expected {sha256(PLAIN)}" in report.failed[0]
    assert "refused and deleted" in report.failed[1] and "sets/member.txt" in report.failed[1]
    assert "3 files" in report.failed[2]
    for target in targets:
        assert not (root / target.path).exists(), f"{target.path} must not be left in place"
    assert not list(root.rglob("*.part"))


def test_a_wrong_file_already_in_place_is_reported_and_kept(server, fixture_targets, tmp_path):
    targets, served = fixture_targets
    server.files.update(served)
    root = tmp_path / "root"
    (root / "sets").mkdir(parents=True)
    (root / "sets/plain.jsonl").write_bytes(b"the user's own file")
    report = fetch(targets[:1], root, mirror=server.url)
    assert "move it away" in report.failed[0] and server.requests == []
    assert (root / "sets/plain.jsonl").read_bytes() == b"the user's own file"


def test_a_dropped_download_is_resumed_with_a_range_request(server, fixture_targets, tmp_path):
    targets, served = fixture_targets
    server.files.update(served)
    server.drop_once = {"/plainsrc/plain.jsonl"}
    root = tmp_path / "root"
    report = fetch(targets[:1], root, mirror=server.url)
    assert report.failed == []
    assert (root / "sets/plain.jsonl").read_bytes() == PLAIN
    half = len(PLAIN) // 2
    assert server.requests == [("/plainsrc/plain.jsonl", None), ("/plainsrc/plain.jsonl", f"bytes={half}-")]


def test_a_partial_file_from_an_earlier_run_is_continued(server, fixture_targets, tmp_path):
    targets, served = fixture_targets
    server.files.update(served)
    root = tmp_path / "root"
    (root / "sets").mkdir(parents=True)
    (root / "sets/plain.jsonl.part").write_bytes(PLAIN[:1000])
    assert fetch(targets[:1], root, mirror=server.url).failed == []
    assert server.requests == [("/plainsrc/plain.jsonl", "bytes=1000-")]
    assert (root / "sets/plain.jsonl").read_bytes() == PLAIN


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_offline_it_stops_at_once_and_lists_every_file_and_its_place(tmp_path, capsys):
    root = tmp_path / "root"
    started = time.perf_counter()
    with pytest.raises(SystemExit) as exit_info:
        fetch_data("tasks", to=str(root), mirror=f"http://127.0.0.1:{closed_port()}")
    assert exit_info.value.code == 2
    assert time.perf_counter() - started < 30
    err = capsys.readouterr().err
    assert "cannot reach http://127.0.0.1:" in err and "place these 8 files by hand" in err
    for target in targets_of("tasks"):
        assert str(root / target.path) in err
    assert "glue/RTE.zip" in err and str(root / ".downloads/glue/RTE.zip") in err
    assert "task-data folder of https://drive.google.com/" in err
    assert not (root / "tasks").exists()


def test_the_git_blob_check_equals_git_hash_object(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    path = tmp_path / "file.json"
    path.write_bytes(PLAIN)
    blob = subprocess.run(["git", "hash-object", str(path)], capture_output=True, text=True, check=True).stdout.strip()
    assert file_problem(path, git_blob=blob) is None
    assert "git blob id" in file_problem(path, git_blob="0" * 40)


def test_every_data_set_of_the_command_has_targets():
    assert set(TARGETS) == {"zsre", "zsre_train", "counterfact", "mquake", "tasks", "wikitext"}
    assert len(targets_of("all")) == sum(len(t) for t in TARGETS.values())
    assert {Path(t.path).name for t in targets_of("tasks")} == set(TASK_FILES.values())
    with pytest.raises(ValueError, match="choose from zsre, zsre_train"):
        targets_of("zsre2")


needs_real = pytest.mark.skipif(not (SHARED_DATA / "tasks").exists() or not (SHARED_DATA / "zsre").exists(),
                                reason="the real data (ZsRE, task sets) is not present")


@needs_real
def test_the_manifest_checksums_are_those_of_the_real_files():
    for target in targets_of("tasks") + targets_of("zsre"):
        assert target_problem(target, SHARED_DATA) is None, target.path
    dialogue = next(t for t in targets_of("tasks") if t.path == "tasks/test-dialogue")
    assert len(dialogue.expected_files()) == 886


@needs_real
@pytest.mark.cli   # seconds, not milliseconds: outside the fast tier
def test_fetching_the_tasks_from_a_mirror_of_the_real_files_gives_files_the_readers_take(tmp_path, capsys):
    """A mirror laid out as the sources serve the files (archives included), built from the real files: fetch_data
    places all 8 task sets, verified by the manifest's checksums, and every reader takes them."""
    real, mirror, root = SHARED_DATA / "tasks", tmp_path / "mirror", tmp_path / "root"
    published = {"gsm8k/test.jsonl": (real / "test-reasoning.jsonl").read_bytes(),
                 "glue/RTE.zip": make_zip({"RTE/train.tsv": (real / "test-NLI.tsv").read_bytes()}),
                 "glue/SST-2.zip": make_zip({"SST-2/dev.tsv": (real / "test-SentimentAnalysis.tsv").read_bytes()}),
                 "conll2003/conll2003.zip": make_zip({"valid.txt": (real / "test-NER.txt").read_bytes(),
                                                      "test.txt": b"another split"}),
                 "mutual/MuTual.zip": make_zip({**{f"MuTual-b90c/data/mutual/dev/{p.name}": p.read_bytes()
                                                   for p in (real / "test-dialogue").iterdir()},
                                                "MuTual-b90c/data/mutual/test/dev_1.txt": b"{}"})}
    for name, data in published.items():
        (mirror / name).parent.mkdir(parents=True, exist_ok=True)
        (mirror / name).write_bytes(data)
    with pytest.raises(SystemExit) as exit_info:   # three files are placed by hand
        fetch_data("tasks", to=str(root), mirror=mirror.as_uri())
    assert exit_info.value.code == 1
    assert "place these 3 files by hand" in capsys.readouterr().err
    for name in ("test-ClosedDomainQA.jsonl", "test-OpenDomainQA.jsonl", "test-summarization.json"):
        shutil.copy(real / name, root / "tasks" / name)
    fetch_data("tasks", to=str(root), mirror=mirror.as_uri())
    assert "0 fetched, 8 already there" in capsys.readouterr().out
    for task in TASK_FILES:
        assert len(read_task(root / "tasks", task)) == len(read_task(real, task)) > 0
    assert not (root / ".downloads").exists()


def test_parquet_files_become_one_datasets_folder_the_corpus_reader_takes(tmp_path):
    """The WikiText form: the hub's parquet shards written as one `datasets` folder with a `text` column."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lit_edit.stats import load_corpus_texts

    shards = [[" = Title = \n", "first document .\n", ""], ["second document .\n"]]
    for i, texts in enumerate(shards):
        (tmp_path / "mirror" / "wiki").mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"text": texts}), tmp_path / "mirror" / "wiki" / f"train-{i}.parquet")
    target = Target("corpus", (Download("wiki", "train-0.parquet"), Download("wiki", "train-1.parquet")), dataset=True)
    root = tmp_path / "root"
    report = fetch([target], root, mirror=(tmp_path / "mirror").as_uri())
    assert report.failed == [] and report.fetched == ["corpus"]
    assert load_corpus_texts(root / "corpus") == [" = Title = \n", "first document .\n", "second document .\n"]
    assert not (root / ".downloads").exists()
