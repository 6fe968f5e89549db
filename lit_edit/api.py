"""The Python API: edit a loaded model and score it on the downstream tasks, without the command line.

``edit`` sets a method up on the model (its statistics, context templates) and applies the requests to it in place,
``requests_per_step`` at a time (all in one step by default), exactly as an editing run's steps do; ``evaluate``
scores the model on the downstream tasks in both modes, as an editing run's downstream points do. Example in the
README ("Python API"), run by ``tests/unit/core/test_api.py``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields

import torch

from lit_edit.editing.requests import EditRequest, LocalityProbe, PortabilityProbe
from lit_edit.editors import EDITORS, EditContext, Editor
from lit_edit.editors.options import editor_options
from lit_edit.metrics.monitors import update_norms
from lit_edit.models.architectures import architecture_of
from lit_edit.stats import StatisticsConfig

REQUEST_FIELDS = tuple(f.name for f in fields(EditRequest))


@dataclass
class EditReport:
    """What :func:`edit` did."""

    method: str
    hyperparameters: dict
    n_edits: int
    seconds: float
    steps: list[dict] = field(default_factory=list)
    """Per edit step: the request ids, the method's diagnostics and ``update_fro/<parameter>`` (‖ΔW‖_F)."""
    details: dict | None = None
    """The method's own findings after the last step (``Editor.report``), e.g. COMEBA-HK's gate."""
    editor: Editor | None = field(default=None, repr=False)
    """The editor, with the state it carries (D4S, COMEBA-HK, AlphaEdit)."""


def methods() -> list[str]:
    """The names :func:`edit` takes as ``method``."""
    return list(EDITORS)


def make_editor(method: str, **options) -> Editor:
    """The editor of ``method`` with ``options`` as its hyperparameters (its constructor's arguments, checked and
    converted as a config's ``editor.init_args`` are: ``values={"clamp_norm_factor": 4.0}`` works)."""
    from jsonargparse import ArgumentParser

    if method not in EDITORS:
        raise ValueError(f"unknown method {method!r}; the methods are {', '.join(methods())} (or pass an Editor)")
    cls = EDITORS[method]
    accepted = list(editor_options(cls))
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"{method} has no option(s) {unknown}; its options are {accepted} "
                         f"(help(lit_edit.editors.{cls.__name__}))")
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(cls, "editor")
    try:
        config = parser.parse_object({"editor": options})
    except Exception as e:   # jsonargparse's message names the option and the expected type
        raise ValueError(f"{method} options {options}: {e}") from None
    return parser.instantiate_classes(config).editor


def _probes(value, kind: type, where: str) -> tuple:
    items = []
    for item in value or ():
        if isinstance(item, kind):
            items.append(item)
        elif isinstance(item, Mapping) and set(item) == {"prompt", "answer"}:
            items.append(kind(item["prompt"], item["answer"]))
        elif isinstance(item, Sequence) and not isinstance(item, str) and len(item) == 2:
            items.append(kind(*item))
        else:
            raise ValueError(f"{where}: expected {{'prompt': ..., 'answer': ...}} items, found {item!r}")
    return tuple(items)


def as_request(item, index: int = 0) -> EditRequest:
    """An :class:`EditRequest` from one item of ``requests``: itself, or a dict of its fields (``target`` may stand
    for ``target_new``; ``locality``/``portability`` items as ``{"prompt", "answer"}``)."""
    if isinstance(item, EditRequest):
        return item
    where = f"requests[{index}]"
    if not isinstance(item, Mapping):
        raise TypeError(f"{where}: expected a dict or an EditRequest, found {type(item).__name__}")
    record = dict(item)
    if "target" in record:
        if "target_new" in record:
            raise ValueError(f"{where}: has both 'target' and 'target_new'; give one")
        record["target_new"] = record.pop("target")
    unknown = sorted(set(record) - set(REQUEST_FIELDS))
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {unknown}; a request has {list(REQUEST_FIELDS)} "
                         "('target' for target_new)")
    missing = [name for name in ("prompt", "subject", "target_new") if name not in record]
    if missing:
        raise ValueError(f"{where}: missing field(s) {missing} (e.g. {{'prompt': 'The capital of {{}} is', "
                         "'subject': 'France', 'target': 'Lyon'})")
    record.setdefault("record_id", f"request:{index}")
    record["locality"] = _probes(record.get("locality"), LocalityProbe, f"{where}.locality")
    record["portability"] = _probes(record.get("portability"), PortabilityProbe, f"{where}.portability")
    return EditRequest(**record)


def edit(model, tokenizer, requests: Iterable, method: str | Editor = "memit", *,
         statistics: StatisticsConfig | Mapping | None = None, requests_per_step: int | None = None,
         progress: bool = False, **options) -> tuple[torch.nn.Module, EditReport]:
    """Edit ``model`` in place with ``method`` and return it with a report.

    Args:
        model: a loaded causal LM of a supported family (``lit_edit.models.load_model_and_tokenizer``).
        tokenizer: its tokenizer (with a pad token).
        requests: dicts with ``prompt`` (``{}`` marks the subject, or the subject occurs in it), ``subject`` and
            ``target`` (optional ``target_true``, ``rephrase_prompts``, ``locality``, ...), or ``EditRequest``s.
        method: a name of :func:`methods` (``memit``, ``rome``, ``ft``, ``kn``, ``mend``, ``d4s``, ``comeba``,
            ``alphaedit``), or an editor object (e.g. ``lit_edit.editors.RECT(lit_edit.editors.MEMIT())``).
        statistics: where the methods that need C = E[k kᵀ] compute it (``StatisticsConfig`` or its fields as a
            dict; default: the fact-world corpus, cached in ``checkpoints/stats``).
        requests_per_step: requests per edit step, applied one step after another; None: all in one step.
        progress: show progress bars (statistics, templates).
        **options: the method's hyperparameters (its constructor's arguments, e.g. ``layers=[0, 1]``).
    """
    if isinstance(method, Editor):
        if options:
            raise ValueError(f"options {sorted(options)} are for a method given by name; an editor object already "
                             "holds its hyperparameters")
        editor = method
    else:
        editor = make_editor(method, **options)
    batch = [as_request(item, i) for i, item in enumerate(requests)]
    if not batch:
        raise ValueError("requests is empty: nothing to edit")
    if requests_per_step is not None and requests_per_step < 1:
        raise ValueError(f"requests_per_step must be >= 1 or None, got {requests_per_step}")
    if not isinstance(statistics, StatisticsConfig):
        statistics = StatisticsConfig(**dict(statistics or {}))
    arch = architecture_of(model)
    name = str(getattr(model, "name_or_path", None) or model.config._name_or_path or type(model).__name__)
    trainable = {n: p.requires_grad for n, p in model.named_parameters()}
    was_training = model.training
    started = time.perf_counter()
    steps = []
    try:
        model.eval().requires_grad_(False)
        editor.setup(model, tokenizer, arch, EditContext(name, statistics, progress=progress))
        size = requests_per_step or len(batch)
        for start in range(0, len(batch), size):
            chunk = batch[start:start + size]
            with torch.enable_grad():
                outcome = editor.edit(model, tokenizer, arch, chunk)
            bad = [n for n, w in editor.effective_weights(model, arch).items() if not torch.isfinite(w).all()]
            if bad:
                raise FloatingPointError(f"{editor.name} left NaN/inf in {bad} editing requests "
                                         f"{[r.record_id for r in chunk]}")
            steps.append({"requests": [r.record_id for r in chunk], **outcome.diagnostics,
                          **update_norms(outcome.deltas)})
        found = editor.report(model, tokenizer, arch, batch)
        details = None if found is None else {**found.summary, **found.files}
    finally:
        for n, p in model.named_parameters():
            p.requires_grad_(trainable[n])
        model.train(was_training)
    report = EditReport(editor.name, editor.hyperparameters(), len(batch), time.perf_counter() - started, steps,
                        details, editor)
    return model, report


def evaluate(model, tokenizer, tasks: Sequence[str] | None = None, root: str = "data/factworld/tasks",
             subset: int | None = None, seed: int = 0, batch_size: int = 32, after_edit: bool = False,
             choice_loglik: bool = False, progress: bool = False) -> dict[str, dict[str, dict[str, float]]]:
    """Score ``model`` on downstream ``tasks``: ``{task: {mode: {metric: value}}}`` (modes ``paper`` and
    ``corrected``; docs/tasks.md).

    Args:
        tasks: names among ``reasoning``, ``nli``, ``open_domain_qa``, ``closed_domain_qa``, ``dialogue``,
            ``summarization``, ``ner``, ``sentiment``; None: all 8.
        root: the folder of the task files: the fact-world mini tasks by default, ``data/tasks`` for the real sets
            under the data root (``python -m lit_edit.tools fetch_data --what tasks``).
        subset: score this many examples per task, drawn with ``seed``; None: all.
        batch_size: prompts per ``generate`` call.
        after_edit: parse as the reference's after-edit scripts do (paper mode; docs/tasks.md).
        choice_loglik: add the ``loglik`` mode to the choice tasks.
        progress: show a progress bar over the tasks.
    """
    # imported here for start-up speed: ``lit_edit.edit`` alone does not load the downstream suite (torchmetrics)
    from lit_edit.tasks.suite import DownstreamConfig, DownstreamSuite

    config = DownstreamConfig(root=str(root), tasks=None if tasks is None else list(tasks), subset=subset, seed=seed,
                              generation_batch_size=batch_size, choice_loglik=choice_loglik)
    scores = DownstreamSuite(config).evaluate(model, tokenizer, after_edit=after_edit, progress=progress)
    return {task: task_scores.summary() for task, task_scores in scores.items()}
