"""The project's text: a README a newcomer reads in minutes, no development history, and citations that resolve.

Every tracked text file (``.md .py .yaml .cfg .toml .txt``) is read. A citation is a path ending in ``.md``
(resolved against the citing file's folder, then the repository root) optionally followed by section numbers
(``§0.2, §0.6``, ``§1-3``, ``§8.2–8.3``) or a quoted section name; each number must be a numbered heading of the
cited file and each name part of a heading. A bare ``§N`` refers to the last file cited before it in the same
file (in a Markdown file, the file cited earlier on the same line, else the file itself). Markdown links to files in
the repository must resolve, anchors included.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import ROOT

README_MAX_LINES = 250
TEXT_SUFFIXES = {".md", ".py", ".yaml", ".cfg", ".toml", ".txt"}

HISTORY = {
    "a numbered session": re.compile(r"\bsessions?\s+\d+", re.IGNORECASE),
    "a numbered issue": re.compile(r"\bissues?\s+\d+", re.IGNORECASE),
    "a version number as a model name": re.compile(r"(?<![\w-])v[12]\b"),
}

SECTION_NUMBER = r"§\s*\d+(?:\.\d+)*"
CITATION = re.compile(
    r"(?P<path>(?:\.{1,2}/|[\w-]+/)*[\w.-]+\.md)(?![\w/])"
    r"(?P<tail>(?:\"[^\"\n]{2,60}\"|[`'\")\]\s,;:]|and\b|" + SECTION_NUMBER
    + r"(?:\s*(?:[-–]|to)\s*§?\s*\d+(?:\.\d+)*)?)*)")
BARE_SECTION = re.compile(SECTION_NUMBER + r"(?:\s*(?:[-–]|to)\s*§?\s*\d+(?:\.\d+)*)?")
NUMBERS = re.compile(r"\d+(?:\.\d+)*")
QUOTED = re.compile(r"\"([^\"\n]{2,60})\"")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
MARKDOWN_LINK = re.compile(r"\[[^\]\n]*\]\(([^)\s]+)\)")
URL = re.compile(r"[a-z]+://\S+")
PAPER = re.compile(r"et al\.,?\s*\d{4},?\s*$")


def tracked_text_files() -> list[Path]:
    """The repository's tracked text files (``git ls-files``; outside a git checkout, every file under the root)."""
    try:
        listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
        paths = [ROOT / line for line in listed.splitlines()]
    except (OSError, subprocess.CalledProcessError):
        skip = {".git", ".venv", "lightning_logs", "runs", "__pycache__"}
        paths = [p for p in ROOT.rglob("*") if not skip & set(p.relative_to(ROOT).parts)]
    return sorted(p for p in paths if p.suffix in TEXT_SUFFIXES and p.is_file())


@dataclass(frozen=True)
class Headings:
    numbers: frozenset[str]
    names: tuple[str, ...]
    anchors: frozenset[str]


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def headings_of(path: Path, cache: dict[Path, Headings] = {}) -> Headings:  # noqa: B006 (a cache on purpose)
    if path not in cache:
        text = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.MULTILINE | re.DOTALL)
        titles = HEADING.findall(text)
        numbers = {m.group(1).rstrip(".") for t in titles if (m := re.match(r"(\d+(?:\.\d+)*)\.?(?:\s|$)", t))}
        cache[path] = Headings(frozenset(numbers), tuple(t.lower() for t in titles),
                               frozenset(github_anchor(t) for t in titles))
    return cache[path]


def resolve(cited: str, citing: Path) -> Path | None:
    for base in (citing.parent, ROOT):
        candidate = (base / cited).resolve()
        if candidate.exists() and ROOT.resolve() in (candidate, *candidate.parents):
            return candidate
    return None


def section_problems(target: Path, tail: str) -> list[str]:
    """Section numbers and quoted names in ``tail`` that ``target`` has no heading for."""
    headings = headings_of(target)
    problems = []
    for match in BARE_SECTION.finditer(tail):
        for number in NUMBERS.findall(match.group(0)):
            if number not in headings.numbers:
                problems.append(f"§{number} is not a numbered heading of {target.relative_to(ROOT)}")
    for name in QUOTED.findall(tail):
        if not any(name.lower() in title for title in headings.names):
            problems.append(f'"{name}" is not a heading of {target.relative_to(ROOT)}')
    return problems


def citation_problems(path: Path) -> list[str]:
    """Every citation of ``path`` that does not resolve, as ``file:line: problem``."""
    text = URL.sub(" ", path.read_text(encoding="utf-8"))
    problems: list[tuple[int, str]] = []
    current: Path | None = None
    current_line = 0
    position = 0
    while position < len(text):
        cite = CITATION.search(text, position)
        bare_end = cite.start() if cite else len(text)
        for bare in BARE_SECTION.finditer(text, position, bare_end):
            if PAPER.search(text[max(0, bare.start() - 30):bare.start()]):
                continue                                   # a section of a paper, not of a file
            line = text.count("\n", 0, bare.start()) + 1
            if path.suffix == ".md" and line != current_line:
                current = path                             # a page's own sections
            if current is None or current.suffix != ".md":
                problems.append((line, f"{bare.group(0)} cites no file (name the docs file before it)"))
            else:
                problems += [(line, p) for p in section_problems(current, bare.group(0))]
        if cite is None:
            break
        line = text.count("\n", 0, cite.start()) + 1
        target = resolve(cite.group("path"), path)
        if target is None:
            problems.append((line, f"{cite.group('path')} is not a file in the repository"))
        else:
            current, current_line = target, line
            problems += [(line, p) for p in section_problems(target, cite.group("tail"))]
        position = cite.end()
    if path.suffix == ".md":
        for link in MARKDOWN_LINK.finditer(text):
            target_text, _, anchor = link.group(1).partition("#")
            line = text.count("\n", 0, link.start()) + 1
            target = path if not target_text else resolve(target_text, path)
            if target is None:
                problems.append((line, f"link {link.group(1)} points to nothing in the repository"))
            elif anchor and target.suffix == ".md" and anchor not in headings_of(target).anchors:
                problems.append((line, f"link {link.group(1)}: no heading with anchor #{anchor}"))
    rel = path.relative_to(ROOT)
    return [f"{rel}:{line}: {problem}" for line, problem in problems]


def test_readme_fits_a_ten_minute_read():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, (f"README.md has {lines} lines (at most {README_MAX_LINES}): move reference "
                                       "material to docs/ and measurements to docs/results/")


def test_no_development_history_in_the_project_text():
    found = []
    for path in tracked_text_files():
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            found += [f"{path.relative_to(ROOT)}:{number}: {what}: {line.strip()[:100]}"
                      for what, pattern in HISTORY.items() if pattern.search(line)]
    assert not found, ("the project speaks of itself in the present (name a model by its folder, or its commit):\n"
                       + "\n".join(found))


def test_every_docs_citation_and_section_resolves():
    checked = [path for path in tracked_text_files() if path != Path(__file__)]   # its own examples are fixtures
    problems = [problem for path in checked for problem in citation_problems(path)]
    assert not problems, "citations that point to nothing in the repository:\n" + "\n".join(problems)


def test_the_checks_catch_what_they_are_for(tmp_path, monkeypatch):
    """Each check on a file made to fail it: a missing file, a missing section, a bare § with no file, a broken
    anchor, and each kind of history; and a good citation passes."""
    import tests.unit.core.test_project_text as module

    monkeypatch.setattr(module, "ROOT", tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "guide.md").write_text("# Guide\n\n## 1. Start\n\n### 1.2 Detail\n\n## Reading a run\n")
    code = tmp_path / "code.py"
    code.write_text('"""See docs/guide.md §1.2 and §1, docs/guide.md "Reading a run", docs/guide.md §1-1.2."""\n')
    assert citation_problems(code) == []
    code.write_text('"""docs/missing.md §1; docs/guide.md §3; docs/guide.md "Nowhere"; guide.md."""\nx = 1  # §2\n')
    problems = "\n".join(citation_problems(code))
    for expected in ("docs/missing.md is not a file", "§3 is not a numbered heading", '"Nowhere" is not a heading',
                     "guide.md is not a file", "§2 is not a numbered heading"):
        assert expected in problems, (expected, problems)
    code.write_text("x = 1  # see §4\n")
    assert "cites no file" in "\n".join(citation_problems(code))
    page = tmp_path / "docs" / "page.md"
    page.write_text("[ok](guide.md#1-start) [bad](guide.md#nowhere) [gone](other.md)\n")
    problems = "\n".join(citation_problems(page))
    assert "#nowhere" in problems and "other.md points to nothing" in problems and "#1-start" not in problems
    page.write_text("# Page\n\n## 1. Own\n\n[g](guide.md) §1.2 and §1\nOn a line of its own §1 is this page's, §7 nowhere\n")
    assert [p.split(": ", 1)[1] for p in citation_problems(page)] == ["§7 is not a numbered heading of docs/page.md"]
    for text in ("in session " + "12 we", "issue " + "4 says", "the v" + "2 model"):
        assert any(pattern.search(text) for pattern in HISTORY.values()), text
    for text in ("wikitext-103-raw-v1", "session-scoped fixture", "an issue with 4 layers", "v10"):
        assert not any(pattern.search(text) for pattern in HISTORY.values()), text
