"""Download the real data into the data root, verified and resumable (``python -m lit_edit.tools fetch_data``).

Every file comes from the source :mod:`lit_edit.data.sources` names. A download goes to ``<file>.part`` and is
resumed from where it stopped (an HTTP ``Range`` request; a server that ignores it sends the whole file again); a
finished download is checked (its ``Content-Length``, and its size, sha256 or git blob id where the manifest knows
them) before it takes its place, and a file that fails a check is deleted, never left where a reader would take it.
Archives are kept in ``<root>/.downloads/`` until every file taken from them is in place. When a source cannot be
reached the command stops at once and lists every file still missing with where it comes from and where it goes,
so that it can be placed by hand.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import sys
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from lit_edit.data.edits import read_edit_set
from lit_edit.data.sources import Download, Target, targets_of
from lit_edit.paths import data_root
from lit_edit.tasks.registry import TASK_FILES, read_task

MIRROR_ENV = "LIT_EDIT_DATA_MIRROR"
DOWNLOADS = ".downloads"
ATTEMPTS = 5
"""Tries per download when the connection drops mid-file (each resumes where the last stopped)."""
CHUNK = 1 << 20


class FetchError(RuntimeError):
    """A file could not be downloaded, extracted or verified; the message names it."""


class SourceUnreachable(FetchError):
    """No connection to a source (offline, a refused connection, an unknown host)."""


class _Interrupted(Exception):
    """The connection dropped before the whole file arrived."""


# ------------------------------------------------------------------------------------------------ checks


def _digests(path: Path) -> tuple[str, str]:
    """sha256 of the file and its git blob id (sha1 of ``blob <size>\\0`` + content)."""
    sha256, blob = hashlib.sha256(), hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            sha256.update(chunk)
            blob.update(chunk)
    return sha256.hexdigest(), blob.hexdigest()


def file_problem(path: Path, size: int | None = None, sha256: str | None = None,
                 git_blob: str | None = None) -> str | None:
    """Why ``path`` is not the expected file (missing, another size, another checksum); None when it is."""
    if not path.is_file():
        return f"{path} is missing"
    actual = path.stat().st_size
    if size is not None and actual != size:
        return f"{path} has {actual} bytes, expected {size}"
    if sha256 is None and git_blob is None:
        return None
    actual_sha256, actual_blob = _digests(path)
    if sha256 is not None and actual_sha256 != sha256:
        return f"{path} has sha256 {actual_sha256}, expected {sha256}"
    if git_blob is not None and actual_blob != git_blob:
        return f"{path} has git blob id {actual_blob}, expected {git_blob}"
    return None


def target_problem(target: Target, root: Path, path: Path | None = None) -> str | None:
    """Why ``target`` is not in place under ``root`` (or at ``path``; see :func:`file_problem`); None when it is."""
    path = path or root / target.path
    if target.dataset:
        return None if (path / "dataset_info.json").is_file() else f"{path} is missing (a `datasets` folder)"
    if target.is_folder:
        if not path.is_dir():
            return f"{path} is missing"
        problems = [p for name, digest in target.expected_files().items()
                    if (p := file_problem(path / name, sha256=digest))]
        return None if not problems else f"{len(problems)} files of {path} are not as expected, e.g. {problems[0]}"
    single = target.downloads[0] if len(target.downloads) == 1 and not target.member else None
    return file_problem(path, target.size, target.sha256, single.git_blob if single else None)


# --------------------------------------------------------------------------------------------- transfer


def _transfer(url: str, part: Path, timeout: float) -> None:
    """Append the rest of ``url`` to ``part`` (all of it when ``part`` is empty or the server ignores ``Range``)."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "lit-edit fetch_data (urllib)"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:   # the range starts at the end: the part is the whole file
            return
        raise FetchError(f"{url}: HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        if isinstance(e.reason, FileNotFoundError):
            raise FetchError(f"{url}: no such file") from None
        raise SourceUnreachable(f"cannot reach {url} ({e.reason})") from None
    except (TimeoutError, ConnectionError) as e:
        raise SourceUnreachable(f"cannot reach {url} ({e})") from None
    with response:
        resumed = bool(offset) and getattr(response, "status", None) == 206
        length = response.headers.get("Content-Length")
        expected = (offset if resumed else 0) + int(length) if length is not None else None
        part.parent.mkdir(parents=True, exist_ok=True)
        with open(part, "ab" if resumed else "wb") as f:
            try:
                while chunk := response.read(CHUNK):
                    f.write(chunk)
            except (http.client.IncompleteRead, ConnectionError, TimeoutError) as e:
                raise _Interrupted(str(e)) from None
    if expected is not None and part.stat().st_size < expected:
        raise _Interrupted(f"{part.stat().st_size} of {expected} bytes")


def download(item: Download, destination: Path, mirror: str | None = None, timeout: float = 60.0,
             size: int | None = None, sha256: str | None = None) -> Path:
    """``item`` at ``destination``, checked against its own size/sha256/git blob id and ``size``/``sha256``;
    resumed from ``<destination>.part`` where an earlier try stopped. A file that fails the check is deleted."""
    size, sha256 = item.size if item.size is not None else size, item.sha256 or sha256
    if destination.is_file() and not file_problem(destination, size, sha256, item.git_blob):
        return destination
    url = item.url(mirror)
    part = destination.with_name(destination.name + ".part")
    for attempt in range(1, ATTEMPTS + 1):
        try:
            _transfer(url, part, timeout)
            break
        except _Interrupted as e:
            print(f"  {url}: the connection dropped ({e}); resuming (try {attempt + 1} of {ATTEMPTS})")
    else:
        raise FetchError(f"{url}: the connection dropped {ATTEMPTS} times; run the command again to resume from "
                         f"{part}")
    problem = file_problem(part, size, sha256, item.git_blob)
    if problem:
        part.unlink()
        raise FetchError(f"{url}: the download is refused and deleted: {problem.replace(str(part), 'it')}")
    part.replace(destination)
    return destination


# ------------------------------------------------------------------------------------------- placing


def _cache(root: Path, item: Download) -> Path:
    return root / DOWNLOADS / item.source / item.path


def _open_archive(path: Path, url: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise FetchError(f"{path} (from {url}) is not a zip archive (the server may have sent a web page "
                         f"instead); download it by hand and put it at {path}") from None


def _matches(name: str, member: str) -> bool:
    return name == member or name.endswith("/" + member)


def _extract_member(archive: zipfile.ZipFile, member: str, out: Path) -> None:
    names = [n for n in archive.namelist() if _matches(n, member)]
    if not names:
        raise FetchError(f"{archive.filename} holds no member {member!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    with archive.open(names[0]) as source, open(out, "wb") as sink:
        shutil.copyfileobj(source, sink, CHUNK)


def _below(name: str, prefix: str) -> str | None:
    """The part of the member ``name`` below the folder ``prefix`` (at the start or after a ``/``); None: outside."""
    if name.startswith(prefix):
        return name[len(prefix):]
    at = name.find("/" + prefix)
    return name[at + 1 + len(prefix):] if at >= 0 else None


def _extract_folder(archive: zipfile.ZipFile, prefix: str, out: Path, wanted: dict[str, str]) -> None:
    """The files below ``prefix`` (those in ``wanted`` when it names any) into the folder ``out``."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for name in archive.namelist():
        relative = _below(name, prefix)
        if relative and not name.endswith("/") and (not wanted or relative in wanted):
            (out / relative).parent.mkdir(parents=True, exist_ok=True)
            with archive.open(name) as source, open(out / relative, "wb") as sink:
                shutil.copyfileobj(source, sink, CHUNK)


def _write_dataset(files: list[Path], out: Path) -> None:
    from datasets import Dataset

    shutil.rmtree(out, ignore_errors=True)
    Dataset.from_parquet([str(f) for f in files]).save_to_disk(str(out))


def place(target: Target, root: Path, mirror: str | None = None, timeout: float = 60.0) -> None:
    """Download and write ``target`` under ``root``; raises :class:`FetchError` when it cannot be verified."""
    path = root / target.path
    if not target.downloads:
        raise FetchError(f"{path} is placed by hand: {target.by_hand}")
    if not target.member and not target.dataset:
        download(target.downloads[0], path, mirror, timeout, target.size, target.sha256)
        return
    files = [download(item, _cache(root, item), mirror, timeout) for item in target.downloads]
    part = path.with_name(path.name + ".part")
    if target.dataset:
        _write_dataset(files, part)
    else:
        with _open_archive(files[0], target.downloads[0].url(mirror)) as archive:
            if target.is_folder:
                _extract_folder(archive, target.member, part, target.expected_files())
            else:
                _extract_member(archive, target.member, part)
    problem = target_problem(target, root, part)
    if problem:
        shutil.rmtree(part) if part.is_dir() else part.unlink()
        raise FetchError(f"{target.path} from {target.downloads[0].url(mirror)} is refused and deleted: {problem}")
    part.replace(path)


def _remove_finished_downloads(targets: list[Target], root: Path) -> None:
    """Delete the archives whose every target is in place."""
    for item in {item for t in targets if t.member or t.dataset for item in t.downloads}:
        users = [t for t in targets if item in t.downloads]
        if _cache(root, item).exists() and all(target_problem(t, root) is None for t in users):
            _cache(root, item).unlink()
    for folder in sorted((root / DOWNLOADS).glob("**/"), reverse=True) if (root / DOWNLOADS).exists() else []:
        if not any(folder.iterdir()):
            folder.rmdir()


# ------------------------------------------------------------------------------------------- the run


@dataclass
class FetchReport:
    present: list[str] = field(default_factory=list)
    fetched: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    """One message per file that could not be placed or verified, or that the readers refuse."""
    by_hand: list[Target] = field(default_factory=list)
    """Files that are placed by hand and are not there yet."""


def where_from(target: Target, root: Path, mirror: str | None = None) -> str:
    """One line: where ``target`` goes and where it comes from."""
    path = root / target.path
    if not target.downloads:
        return f"{path}\n      {target.by_hand}"
    urls = ", ".join(item.url(mirror) for item in target.downloads)
    if target.dataset:
        return f"{path}  (a `datasets` folder, save_to_disk of {urls})"
    if target.member:
        archive = _cache(root, target.downloads[0])
        return f"{path}  ({target.member} in {urls}; or put that archive at {archive})"
    return f"{path}  ({urls})"


def fetch(targets: list[Target], root: Path, mirror: str | None = None, timeout: float = 60.0) -> FetchReport:
    """Place every target that is not in place yet; a :class:`SourceUnreachable` stops the run at once."""
    report = FetchReport()
    for target in targets:
        problem = target_problem(target, root)
        if problem is None:
            report.present.append(target.path)
        elif not target.downloads and not (root / target.path).exists():
            report.by_hand.append(target)
        elif (root / target.path).exists():
            report.failed.append(f"{problem}; it is left as it is (move it away to fetch it again)")
        else:
            print(f"fetching {target.path}")
            try:
                place(target, root, mirror, timeout)
                report.fetched.append(target.path)
            except SourceUnreachable:
                raise
            except FetchError as e:
                report.failed.append(str(e))
    _remove_finished_downloads(targets, root)
    report.failed += [problem for t in targets
                      if target_problem(t, root) is None and (problem := readers_problem(t, root))]
    return report


def readers_problem(target: Target, root: Path) -> str | None:
    """What the project's reader says about ``target`` (an edit set, a task file, a corpus folder); None: fine."""
    path = root / target.path
    tasks = {name: task for task, name in TASK_FILES.items()}
    try:
        if path.parent.name == "tasks" and path.name in tasks:
            read_task(path.parent, tasks[path.name])
        elif path.parent.name == "zsre" or target.path == "counterfact/counterfact.json":
            read_edit_set(path)
        elif target.dataset:
            from datasets import load_from_disk

            if "text" not in load_from_disk(str(path)).column_names:
                return f"{path} has no 'text' column"
    except (ValueError, OSError, KeyError) as e:
        return f"{path} is in place but its reader refuses it: {e}"
    return None


def fetch_data(what: Literal["zsre", "zsre_train", "counterfact", "mquake", "tasks", "wikitext", "all"],
               to: str | None = None, mirror: str | None = None, timeout: float = 60.0) -> None:
    """Download a data set into the data root, verified, resumable, in the formats the readers take.

    Args:
        what: zsre (EasyEdit's ZsRE with portability), zsre_train (the MEND training and evaluation splits),
            counterfact (with attribute snippets and TF-IDF statistics), mquake, tasks (the 8 downstream test sets),
            wikitext (wikitext-103-raw-v1 train as a `datasets` folder: the statistics corpus), or all.
        to: the data root to write into; default: $LIT_EDIT_DATA, else the project's data/.
        mirror: fetch every file from <mirror>/<source>/<path> instead (http://, https:// or file://); default:
            $LIT_EDIT_DATA_MIRROR, else the public sources (lit_edit/data/sources.py).
        timeout: seconds to wait for a server.
    """
    root = Path(to).expanduser() if to else data_root()
    mirror = mirror or os.environ.get(MIRROR_ENV) or None
    targets = targets_of(what)
    try:
        report = fetch(targets, root, mirror, timeout)
    except SourceUnreachable as e:
        missing = [t for t in targets if target_problem(t, root) is not None]
        lines = "\n  ".join(where_from(t, root, mirror) for t in missing)
        print(f"fetch_data: {e}. Nothing more is downloaded. When online, run the command again (it resumes); or "
              f"place these {len(missing)} files by hand:\n  {lines}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"{what} in {root}: {len(report.fetched)} fetched, {len(report.present)} already there")
    if report.by_hand:
        lines = "\n  ".join(where_from(t, root, mirror) for t in report.by_hand)
        print(f"place these {len(report.by_hand)} files by hand (they are checked when you run this again):"
              f"\n  {lines}", file=sys.stderr)
    for message in report.failed:
        print(f"fetch_data: {message}", file=sys.stderr)
    if report.failed or report.by_hand:
        raise SystemExit(1)
