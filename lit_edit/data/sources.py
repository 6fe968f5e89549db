"""Where the real data comes from: every file ``python -m lit_edit.tools fetch_data`` places under the data root,
the public source it is downloaded from (the ones the papers' repositories use), and its size and sha256 where they
are known.

A checksum is recorded only where it is known: for the files the papers used that were compared byte for byte with
their public source (GSM8K, MuTual), or that are the papers' own copies (the ZsRE portability file and the 8 task
files: what a download or a copy placed by hand must equal). Three task files exist only in the papers' shared
folder, in the form the papers used (BoolQ and SAMSum lost records there, NQ carries generated passages); they are
placed by hand and checked. Everything else is verified by its length (``Content-Length``) and by reading it with
the project's readers.

Every URL is ``SOURCES[source]`` with ``{path}`` filled in; a mirror (``--mirror`` / ``$LIT_EDIT_DATA_MIRROR``)
replaces it by ``<mirror>/<source>/<path>`` (a local copy, or the test server).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SOURCES = {
    "rome": "https://rome.baulab.info/data/dsets/{path}",
    "easyedit": ("https://drive.usercontent.google.com/download?id=1WRo2SqqgNtZF11Vq0sF5nL_-bHi18Wi4"
                 "&export=download&confirm=t"),
    "gsm8k": ("https://raw.githubusercontent.com/openai/grade-school-math/3101c7d5072418e28b9008a6636bde82a006892c/"
              "grade_school_math/data/{path}"),
    "mutual": "https://codeload.github.com/Nealcly/MuTual/zip/b90cecada5b34226cd3d88e217844c80a6d8ee3f",
    "glue": "https://dl.fbaipublicfiles.com/glue/data/{path}",
    "conll2003": "https://data.deepai.org/{path}",
    "mquake": ("https://raw.githubusercontent.com/princeton-nlp/MQuAKE/fb43dadc2d8cd19d08ce81c63d957b59deb3f3cd/"
               "datasets/{path}"),
    "wikitext": "https://huggingface.co/datasets/Salesforce/wikitext/resolve/main/wikitext-103-raw-v1/{path}",
}
"""Source name → URL template. ``easyedit`` is EasyEdit's data archive (Google Drive), ``mutual`` the MuTual
repository at a pinned commit."""

PAPER_FOLDER = "https://drive.google.com/drive/folders/1isrBQ_8MTvbP1T8BqregyDy-t7bLFmPF"
"""The data folder of the downstream-task study (Model-Editing-Hurt's README): ``task-data/`` holds the 8 test sets."""

CHECKSUMS = Path(__file__).resolve().parent / "checksums"


@dataclass(frozen=True)
class Download:
    """One file fetched from a source."""

    source: str
    """A key of :data:`SOURCES`."""
    path: str
    """The file's path at the source (and under ``<mirror>/<source>/``); also its name in the download folder."""
    size: int | None = None
    sha256: str | None = None
    git_blob: str | None = None
    """The git object id (sha1 of ``blob <size>\\0<content>``) of a file served from a pinned commit."""

    def url(self, mirror: str | None = None) -> str:
        if mirror:
            return f"{mirror.rstrip('/')}/{self.source}/{self.path}"
        return SOURCES[self.source].format(path=self.path)


@dataclass(frozen=True)
class Target:
    """A file or folder under the data root and how it is made.

    With one download and no ``member``, the download is the file. With ``member``, it is that member of the
    archive that ``downloads[0]`` is (matched at the end of the member's path); a ``member`` ending in ``/`` is a
    folder whose files are checked against ``checksums``. With ``dataset``, the downloads are parquet files written
    as one ``datasets`` folder (``save_to_disk``). Without downloads it is placed by hand, as ``by_hand`` says.
    """

    path: str
    downloads: tuple[Download, ...] = ()
    member: str | None = None
    size: int | None = None
    sha256: str | None = None
    checksums: str | None = None
    """For a folder: a ``sha256sum`` listing in ``lit_edit/data/checksums/``, one line per file it must hold."""
    dataset: bool = False
    by_hand: str | None = None

    @property
    def is_folder(self) -> bool:
        return self.dataset or bool(self.member and self.member.endswith("/"))

    def expected_files(self) -> dict[str, str]:
        """A folder's files and their sha256 (from :attr:`checksums`)."""
        if not self.checksums:
            return {}
        lines = (CHECKSUMS / self.checksums).read_text(encoding="utf-8").splitlines()
        return {name.strip(): digest for digest, name in (line.split(None, 1) for line in lines if line.strip())}


def _paper_task(name: str) -> str:
    return f"{name} from the task-data folder of {PAPER_FOLDER}"


ROME = "rome"   # the ROME/MEMIT authors' data server, which their repositories download from
TARGETS: dict[str, tuple[Target, ...]] = {
    "zsre": (
        Target("zsre/zsre_mend_eval_portability_gpt4.json", (Download("easyedit", "data.zip"),),
               member="portability/One Hop/zsre_mend_eval_portability_gpt4.json", size=842861,
               sha256="0cf155da229b2eccae19fcfe5f7a09523363d357f5f15508d1521f495ad5ecd9"),
    ),
    "zsre_train": (
        Target("zsre/zsre_mend_train.json", (Download(ROME, "zsre_mend_train.json"),)),
        Target("zsre/zsre_mend_eval.json", (Download(ROME, "zsre_mend_eval.json"),)),
    ),
    "counterfact": (
        Target("counterfact/counterfact.json", (Download(ROME, "counterfact.json"),)),
        Target("counterfact/attribute_snippets.json", (Download(ROME, "attribute_snippets.json"),)),
        Target("counterfact/idf.npy", (Download(ROME, "idf.npy"),)),
        Target("counterfact/tfidf_vocab.json", (Download(ROME, "tfidf_vocab.json"),)),
    ),
    "mquake": (
        Target("mquake/MQuAKE-CF-3k.json",
               (Download("mquake", "MQuAKE-CF-3k.json", git_blob="b9d0963c6c1c81b24d8113ffdc3fd0865a423e18"),)),
        Target("mquake/MQuAKE-CF-3k-v2.json",
               (Download("mquake", "MQuAKE-CF-3k-v2.json", git_blob="6cf0904341e9910ce702641c5a24547ce23ff1e2"),)),
        Target("mquake/MQuAKE-T.json",
               (Download("mquake", "MQuAKE-T.json", git_blob="afd89d0c8fe5e304f771bad88cc0ced611278fe0"),)),
    ),
    "tasks": (
        Target("tasks/test-reasoning.jsonl", (Download("gsm8k", "test.jsonl"),), size=749738,
               sha256="3730d312f6e3440559ace48831e51066acaca737f6eabec99bccb9e4b3c39d14"),
        Target("tasks/test-NLI.tsv", (Download("glue", "RTE.zip"),), member="RTE/train.tsv", size=846026,
               sha256="5fb9b78108e99f6e505a16c85e4655ac71e988fa1b8be7eff5d57890ef9cbd91"),
        Target("tasks/test-SentimentAnalysis.tsv", (Download("glue", "SST-2.zip"),), member="SST-2/dev.tsv",
               size=94931, sha256="54a9c12c77e402fc14d6a66a506f24d999f596b0176eb777c972cccc2f9cc4b0"),
        Target("tasks/test-NER.txt", (Download("conll2003", "conll2003.zip"),), member="valid.txt", size=827443,
               sha256="c02eb19809eafb83998326a0481942eb37d96f31826ae387cfe8773699969f5b"),
        Target("tasks/test-dialogue", (Download("mutual", "MuTual.zip"),), member="data/mutual/dev/",
               checksums="mutual-dev.sha256"),
        Target("tasks/test-ClosedDomainQA.jsonl", size=2228890,
               sha256="8b436c78db44506422bb81e3335c8b1547230d4527547aaca2b36a5846bb42a5",
               by_hand=_paper_task("test-ClosedDomainQA.jsonl")),
        Target("tasks/test-OpenDomainQA.jsonl", size=1685336,
               sha256="024b6a9b02cd1cdea0ce0053d8f6504c6fb6c47ebb08ae886d99ee76eb6a163a",
               by_hand=_paper_task("test-OpenDomainQA.jsonl")),
        Target("tasks/test-summarization.json", size=571716,
               sha256="f291b34ea2a851c4fd67bc9e1c05003f0dde2c2ae1a501ba733b9d97b6166349",
               by_hand=_paper_task("test-summarization.json")),
    ),
    "wikitext": (
        Target("wikitext-103-raw-v1", (Download("wikitext", "train-00000-of-00002.parquet"),
                                       Download("wikitext", "train-00001-of-00002.parquet")), dataset=True),
    ),
}
"""Group (the ``fetch_data`` choice) → its targets, paths relative to the data root."""

GROUPS = (*TARGETS, "all")


def targets_of(group: str) -> list[Target]:
    """The targets of ``group`` (``all``: every group), in manifest order."""
    if group not in GROUPS:
        raise ValueError(f"unknown data set {group!r}; choose from {', '.join(GROUPS)}")
    names = list(TARGETS) if group == "all" else [group]
    return [target for name in names for target in TARGETS[name]]
