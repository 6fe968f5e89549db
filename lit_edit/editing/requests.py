"""Edit requests and the readers of the published ZsRE and CounterFact edit sets (docs/methods.md §0.1, §11.4).

A request is ``prompt`` with one ``{}`` subject slot, the ``subject``, the new target and the evaluation
probes. Readers return an :class:`EditSet` that records the source file, its sha256 and every skipped
record with the reason, so a run can say exactly which edits it made (docs/evaluation.md, "Reproducibility").
Errors name the file, the record index, the record id and the source field.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lit_edit.errors import UserError

NQ_PREFIX = "nq question: "


class EditRequestError(ValueError):
    """A malformed request or record; ``field`` is the request field, or the source field from a reader."""

    def __init__(self, record_id: str, field: str, problem: str, where: str = ""):
        self.record_id, self.field, self.problem = record_id, field, problem
        super().__init__(f"{where}record {record_id} field {field!r}: {problem}")


@dataclass(frozen=True)
class LocalityProbe:
    """An unrelated prompt whose answer must not change (the answer is the dataset's ground truth)."""

    prompt: str
    answer: str


@dataclass(frozen=True)
class PortabilityProbe:
    """A one-hop consequence of the edit (EasyEdit's ``portability`` {"New Question", "New Answer"})."""

    prompt: str
    answer: str


@dataclass(frozen=True)
class EditRequest:
    """One fact to edit, with its evaluation probes.

    Normalisation in ``__post_init__``: a prompt without ``{}`` gets its first occurrence of the subject
    replaced by ``{}`` (docs/methods.md §0.1); targets lose surrounding whitespace, since the leading space
    belongs to the tokenisation step (``scoring.encode_pairs``; docs/methods.md §0.1 quirk E-ROME/E-FT);
    lists become tuples.
    """

    prompt: str
    """The edit prompt with exactly one ``{}`` subject slot and no other braces."""
    subject: str
    target_new: str
    target_true: str | None = None
    rephrase_prompts: tuple[str, ...] = ()
    """Paraphrases of the edit prompt, subject filled in (generality)."""
    locality: tuple[LocalityProbe, ...] = ()
    portability: tuple[PortabilityProbe, ...] = ()
    record_id: str = "<unnamed>"
    relation: str | None = None
    generation_prompts: tuple[str, ...] = ()
    """CounterFact generation prompts (free generation, consistency and fluency)."""
    target_new_id: str | None = None
    """CounterFact's id of the new object (``requested_rewrite.target_new.id``): with ``relation`` it names the
    reference texts of consistency (docs/evaluation.md §13)."""

    def __post_init__(self) -> None:
        fail = lambda field, problem: EditRequestError(self.record_id, field, problem)
        if not isinstance(self.record_id, str):
            raise fail("record_id", f"expected a string, found {type(self.record_id).__name__}")
        for name in ("prompt", "subject", "target_new"):
            if not isinstance(getattr(self, name), str):
                raise fail(name, f"expected a string, found {type(getattr(self, name)).__name__}")
        for name in ("target_true", "relation", "target_new_id"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), str):
                raise fail(name, f"expected a string or None, found {type(getattr(self, name)).__name__}")
        if not self.subject.strip():
            raise fail("subject", "subject is empty")
        prompt = self.prompt
        if "{}" not in prompt:
            if self.subject not in prompt:
                raise fail("prompt", f"has no '{{}}' slot and the subject {self.subject!r} does not occur in "
                                     f"{prompt!r}")
            prompt = prompt.replace(self.subject, "{}", 1)
        if prompt.count("{}") != 1 or prompt.replace("{}", "").count("{") or prompt.replace("{}", "").count("}"):
            raise fail("prompt", f"needs exactly one '{{}}' subject slot and no other braces: {prompt!r}")
        object.__setattr__(self, "prompt", prompt)
        for name in ("target_new", "target_true"):
            value = getattr(self, name)
            if value is not None:
                if not value.strip():
                    raise fail(name, "target is empty")
                object.__setattr__(self, name, value.strip())
        for name, kind in (("rephrase_prompts", str), ("generation_prompts", str), ("locality", LocalityProbe),
                           ("portability", PortabilityProbe)):
            value = getattr(self, name)
            if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
                raise fail(name, f"expected a sequence of {kind.__name__}, found {type(value).__name__}")
            bad = [type(v).__name__ for v in value if not isinstance(v, kind)]
            if bad:
                raise fail(name, f"expected items of type {kind.__name__}, found {bad[0]}")
            object.__setattr__(self, name, tuple(value))

    @property
    def text(self) -> str:
        """The edit prompt with the subject filled in."""
        return self.prompt.replace("{}", self.subject, 1)


@dataclass(frozen=True)
class EditSet:
    """The requests read from one file, the records skipped (record id, reason), the file and its sha256, and the
    position in the file of each request (``indices``; messages name a record as ``file[index]``)."""

    requests: tuple[EditRequest, ...]
    skipped: tuple[tuple[str, str], ...]
    source: str
    sha256: str
    indices: tuple[int, ...] = ()

    def __len__(self) -> int:
        return len(self.requests)


# --------------------------------------------------------------------------------------------- readers


class EditSetFileError(UserError, ValueError):
    """An edit-set file that is not a list of records; the message names the file and what was expected."""


EXPECTED = "expected a JSON list of edit records (ZsRE or CounterFact) or JSON Lines (one record per line)"


def _json_lines(text: str, path: Path | str) -> list:
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise EditSetFileError(f"{path}:{number}: not valid JSON ({e}); {EXPECTED}") from e
    return records


def load_records(path: Path | str) -> tuple[list, str]:
    """The raw records of an edit-set file and its sha256: a JSON list, or JSON Lines (a ``.jsonl`` file, or any
    file holding several JSON values one per line), in UTF-8 with or without a byte-order mark. An empty file or
    list, another encoding, or anything but a list is refused naming the file and what was expected."""
    data = Path(path).read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise EditSetFileError(f"{path}: not UTF-8 text (byte {data[e.start]:#04x} at offset {e.start}); save it as "
                               f"UTF-8 ({EXPECTED})") from e
    if not text.strip():
        raise EditSetFileError(f"{path} is empty; {EXPECTED}")
    try:
        records = None
        if Path(path).suffix.lower() != ".jsonl":
            try:
                records = json.loads(text)
            except json.JSONDecodeError as e:
                if e.msg != "Extra data":   # several values: JSON Lines
                    raise EditSetFileError(f"{path}: not valid JSON ({e}); {EXPECTED}") from e
        records = _json_lines(text, path) if records is None else records
    except RecursionError as e:
        raise EditSetFileError(f"{path}: nested too deeply to be an edit set; {EXPECTED}") from e
    if not isinstance(records, list):
        raise EditSetFileError(f"{path}: expected a JSON list of records, found {type(records).__name__}")
    if not records:
        raise EditSetFileError(f"{path} holds no records; {EXPECTED}")
    return records, hashlib.sha256(data).hexdigest()


class _Record:
    """Typed field access into one raw record; every error names file, index, record id and field."""

    def __init__(self, raw: Any, path: Path | str, index: int, record_id: str):
        self.where, self.record_id = f"{path}[{index}]: ", record_id
        if not isinstance(raw, dict):
            raise self.error("<record>", f"expected a JSON object, found {type(raw).__name__}")
        self.raw = raw

    def error(self, field: str, problem: str) -> EditRequestError:
        return EditRequestError(self.record_id, field, problem, self.where)

    def get(self, dotted: str, kind: type | tuple[type, ...], required: bool = True) -> Any:
        value: Any = self.raw
        for part in dotted.split("."):
            if not isinstance(value, dict) or part not in value:
                if not required:
                    return None
                keys = sorted(value) if isinstance(value, dict) else type(value).__name__
                raise self.error(dotted, f"missing (found {keys})")
            value = value[part]
        if not isinstance(value, kind):
            names = "/".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
            raise self.error(dotted, f"expected {names}, found {type(value).__name__}")
        return value

    def strings(self, dotted: str, required: bool = True) -> tuple[str, ...]:
        """A list of strings (a single string is accepted as a list of one)."""
        value = self.get(dotted, (list, str), required)
        if value is None:
            return ()
        value = [value] if isinstance(value, str) else value
        if not all(isinstance(v, str) for v in value):
            raise self.error(dotted, "expected a list of strings")
        return tuple(value)

    def build(self, sources: dict[str, str], **fields: Any) -> EditRequest:
        """An :class:`EditRequest`, with its validation errors renamed to the source fields."""
        try:
            return EditRequest(record_id=self.record_id, **fields)
        except EditRequestError as e:
            raise self.error(sources.get(e.field, e.field), e.problem) from e


ZSRE_SOURCES = {"prompt": "src", "subject": "subject", "target_new": "alt", "target_true": "answers[0]",
                "rephrase_prompts": "rephrase", "relation": "relation"}
COUNTERFACT_SOURCES = {"prompt": "requested_rewrite.prompt", "subject": "requested_rewrite.subject",
                       "target_new": "requested_rewrite.target_new.str",
                       "target_true": "requested_rewrite.target_true.str", "relation": "requested_rewrite.relation_id",
                       "target_new_id": "requested_rewrite.target_new.id"}
COUNTERFACT_EDIT_SOURCES = {"prompt": "prompt", "subject": "subject", "target_new": "target_new",
                            "target_true": "ground_truth", "rephrase_prompts": "rephrase_prompt"}


def _portability(record: _Record) -> tuple[PortabilityProbe, ...]:
    raw = record.get("portability", (dict, list), required=False)
    entries = [] if raw is None else [raw] if isinstance(raw, dict) else raw
    probes = []
    for i, entry in enumerate(entries):
        field = "portability" if isinstance(raw, dict) else f"portability[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("New Question"), str) \
                or not isinstance(entry.get("New Answer"), str):
            raise record.error(field, 'expected {"New Question": str, "New Answer": str}')
        if not entry["New Answer"].strip():
            raise record.error(f"{field}.New Answer", "answer is empty")
        probes.append(PortabilityProbe(entry["New Question"], entry["New Answer"].strip()))
    return tuple(probes)


def _check_unique(requests: list[EditRequest], path: Path | str) -> None:
    seen: set[str] = set()
    for r in requests:
        if r.record_id in seen:
            raise ValueError(f"{path}: record id {r.record_id} occurs twice")
        seen.add(r.record_id)


ZSRE_TARGET_TRUE = ("answers", "pred")


def read_zsre(path: Path | str, id_prefix: str = "zsre", target_true: str = "answers") -> EditSet:
    """Read an EasyEdit/MEND ZsRE file (docs/methods.md §11.4), e.g. ``zsre_mend_eval_portability_gpt4.json``.

    prompt = ``src``, target_new = ``alt`` (EasyEdit; the memit repo edits to ``answers[0]`` instead,
    docs/methods.md §11.3 and §13), target_true = ``answers[0]`` (``target_true="pred"``: the record's ``pred``, the old
    answer the side-effects study's scripts hand to KN, ``docs/fidelity.md``), rephrase = ``rephrase``, locality =
    (``loc`` without its leading "nq question: ", ``loc_ans``), portability from ``portability``.
    Records with an empty ``alt`` are skipped, as in EasyEdit, and listed in ``EditSet.skipped``.
    Record ids are ``{id_prefix}:{index in the file}``.
    """
    if target_true not in ZSRE_TARGET_TRUE:
        raise ValueError(f"target_true must be one of {ZSRE_TARGET_TRUE} (the ZsRE field read as the old answer), "
                         f"got {target_true!r}")
    sources = ZSRE_SOURCES if target_true == "answers" else {**ZSRE_SOURCES, "target_true": "pred"}
    raw_records, sha = load_records(path)
    requests, skipped, indices = [], [], []
    for index, raw in enumerate(raw_records):
        record = _Record(raw, path, index, f"{id_prefix}:{index}")
        alt = record.get("alt", str)
        if not alt.strip():
            skipped.append((record.record_id, "empty 'alt' (no new target)"))
            continue
        indices.append(index)
        answers = record.strings("answers")
        if not answers:
            raise record.error("answers", "is an empty list")
        loc = record.get("loc", str)
        locality = LocalityProbe(loc[len(NQ_PREFIX):] if loc.startswith(NQ_PREFIX) else loc,
                                 record.get("loc_ans", str).strip())
        if not locality.answer:
            raise record.error("loc_ans", "answer is empty")
        old_answer = answers[0] if target_true == "answers" else record.get("pred", str)
        requests.append(record.build(
            sources, prompt=record.get("src", str), subject=record.get("subject", str), target_new=alt,
            target_true=old_answer, rephrase_prompts=record.strings("rephrase"), locality=(locality,),
            portability=_portability(record), relation=record.get("relation", str, required=False)))
    _check_unique(requests, path)
    return EditSet(tuple(requests), tuple(skipped), str(path), sha, tuple(indices))


def is_counterfact_edit_record(record: Any) -> bool:
    """Whether ``record`` is in EasyEdit's flattened CounterFact format (``counterfact-edit.json``)."""
    return isinstance(record, dict) and "requested_rewrite" not in record and "ground_truth" in record \
        and "locality_prompt" in record


def read_counterfact(path: Path | str, id_prefix: str = "counterfact") -> EditSet:
    """Read a CounterFact file (docs/methods.md §11.4): the original ``counterfact.json``/``multi_counterfact.json``,
    or EasyEdit's flattened ``counterfact-edit.json`` (told apart by the first record).

    Original: rephrases = ``paraphrase_prompts`` (all of them; EasyEdit's runner uses only the first), locality =
    ``neighborhood_prompts`` with ``target_true`` as the answer, ``generation_prompts`` and the new object's id
    kept. Flattened: prompt = ``prompt``, target_new = ``target_new``, target_true = ``ground_truth``, rephrase =
    ``rephrase_prompt``, locality = (``locality_prompt``, ``locality_ground_truth``); it has no generation
    prompts, so fluency and consistency are not scored. Record ids are ``{id_prefix}:{case_id}``, or
    ``{id_prefix}:{index in the file}`` for a flattened record without ``case_id``.
    """
    raw_records, sha = load_records(path)
    flattened = bool(raw_records) and is_counterfact_edit_record(raw_records[0])
    requests = []
    for index, raw in enumerate(raw_records):
        case_id = _Record(raw, path, index, f"#{index}").get("case_id", (int, str), required=not flattened)
        record = _Record(raw, path, index, f"{id_prefix}:{index if case_id is None else case_id}")
        requests.append(_counterfact_edit_request(record) if flattened else _counterfact_request(record))
    _check_unique(requests, path)
    return EditSet(tuple(requests), (), str(path), sha, tuple(range(len(requests))))


def _counterfact_request(record: _Record) -> EditRequest:
    target_true = record.get("requested_rewrite.target_true.str", str)
    return record.build(
        COUNTERFACT_SOURCES, prompt=record.get("requested_rewrite.prompt", str),
        subject=record.get("requested_rewrite.subject", str),
        target_new=record.get("requested_rewrite.target_new.str", str), target_true=target_true,
        rephrase_prompts=record.strings("paraphrase_prompts"),
        locality=tuple(LocalityProbe(p, target_true.strip()) for p in record.strings("neighborhood_prompts")),
        generation_prompts=record.strings("generation_prompts", required=False),
        relation=record.get("requested_rewrite.relation_id", str, required=False),
        target_new_id=record.get("requested_rewrite.target_new.id", str, required=False))


def _counterfact_edit_request(record: _Record) -> EditRequest:
    answer = record.get("locality_ground_truth", str).strip()
    if not answer:
        raise record.error("locality_ground_truth", "answer is empty")
    return record.build(
        COUNTERFACT_EDIT_SOURCES, prompt=record.get("prompt", str), subject=record.get("subject", str),
        target_new=record.get("target_new", str), target_true=record.get("ground_truth", str),
        rephrase_prompts=record.strings("rephrase_prompt"),
        locality=(LocalityProbe(record.get("locality_prompt", str), answer),))


# ------------------------------------------------------------------------------------------- selection


class SelectionError(UserError, ValueError):
    """A selection of edit requests that the set cannot give."""


def select(requests: Sequence[EditRequest], start: int = 0, stop: int | None = None, step: int = 1,
           n: int | None = None, shuffle: bool = False, seed: int = 0, distinct_subjects_per_batch: int | None = None
           ) -> tuple[list[EditRequest], list[str]]:
    """``requests[start:stop:step]``, then shuffled with ``random.Random(seed)`` if asked, then (with
    ``distinct_subjects_per_batch``) reordered by :func:`separate_shared_subjects`, then the first ``n``.

    Returns the requests in edit order and their record ids (the edit order a run must record).
    """
    if step < 1:
        raise SelectionError(f"step must be >= 1, got {step}")
    chosen = list(requests[start:stop:step])
    if shuffle:
        random.Random(seed).shuffle(chosen)
    if distinct_subjects_per_batch is not None:
        chosen = separate_shared_subjects(chosen, distinct_subjects_per_batch)
    if n is not None:
        if not 0 <= n <= len(chosen):
            raise SelectionError(f"n={n} edits asked, but the slice [{start}:{stop}:{step}] holds {len(chosen)}")
        chosen = chosen[:n]
    return chosen, [r.record_id for r in chosen]


def separate_shared_subjects(requests: Sequence[EditRequest], batch_size: int) -> list[EditRequest]:
    """Reorder ``requests`` so that no block of ``batch_size`` consecutive requests (one edit step) names a subject
    twice, as far as the requests allow.

    Batch methods (MEMIT and its descendants) read one key per request at the subject's last token, so two requests
    about one subject ask one key for two values and the least-squares update can satisfy neither. Each block is
    filled in order from the requests still waiting; a request whose subject the block already has waits for the
    next block, ahead of later requests. Only when every waiting request conflicts (the tail of a set with few
    subjects) does a block take a repeat; :func:`shared_subject_count` counts them.
    """
    if batch_size < 1:
        raise ValueError(f"distinct_subjects_per_batch must be >= 1, got {batch_size}")
    upcoming, waiting, ordered = iter(requests), [], []
    exhausted = False
    while waiting or not exhausted:
        block, subjects, still_waiting = [], set(), []
        for request in waiting:                      # requests deferred from earlier blocks go first
            if len(block) < batch_size and request.subject not in subjects:
                block.append(request)
                subjects.add(request.subject)
            else:
                still_waiting.append(request)
        while len(block) < batch_size and not exhausted:
            request = next(upcoming, None)
            if request is None:
                exhausted = True
            elif request.subject in subjects:
                still_waiting.append(request)
            else:
                block.append(request)
                subjects.add(request.subject)
        while len(block) < batch_size and still_waiting:   # only conflicting requests remain
            block.append(still_waiting.pop(0))
        ordered += block
        waiting = still_waiting
    return ordered


def shared_subject_count(batch: Sequence[EditRequest]) -> int:
    """How many requests of ``batch`` name a subject an earlier request of the batch already names."""
    return len(batch) - len({r.subject for r in batch})
