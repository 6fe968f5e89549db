"""An experiment file: base configs, fixed options and axes whose product is the grid of runs (docs/experiments.md).

Every point of the grid is one ``main.py test`` run; its folder is named by the point's labels
(``method=memit__n=2``), so the names are readable, safe on any file system and the same on every expansion.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lit_edit.errors import UserError

CONFIG_OPTION = "config"
"""The axis option that stacks a config file (``--config <value>``) instead of setting one option."""
SWEEP_OWNED = ("model.init_args.results_dir", "trainer.resume_from", "trainer.checkpoint_every_n_batches")
"""Options the sweep sets itself for every point (its folder, resuming it, saving the run state)."""
TOP_LEVEL = ("description", "variables", "configs", "overlays", "options", "axes", "include", "exclude",
             "checkpoint_every_n_batches")
FOLDER_PLACEHOLDER = "folder"
"""``{folder}`` in an option's text is the point's run folder (:func:`option_argument`), never a variable."""
_OPTION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


class ExperimentFileError(UserError):
    """An experiment file that cannot describe a grid; the message names the file and the field at fault."""


def label_of(value: Any, option: str = "") -> str:
    """A file-system-safe label of an axis value: a config file by its stem, a list by its items joined with ``-``,
    anything else by its text (``None`` → ``null``, booleans lower case); characters other than letters, digits and
    ``._+-`` become ``-``."""
    if option == CONFIG_OPTION and isinstance(value, str):
        text = Path(value).stem
    elif isinstance(value, (list, tuple)):
        text = "-".join(label_of(item) for item in value)
    elif value is None or isinstance(value, bool):
        text = json.dumps(value)
    else:
        text = str(value)
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", text).strip("-") or "empty"


def option_argument(value: Any, folder: str = "") -> str:
    """``value`` as one command-line argument: text as it is, anything else as JSON (``[token]`` → ``["token"]``,
    ``None`` → ``null``); ``{folder}`` in text becomes the point's folder."""
    if isinstance(value, str):
        return value.replace("{folder}", folder)
    return json.dumps(value).replace("{folder}", folder)


@dataclass(frozen=True)
class Axis:
    """One dimension of the grid: an option (or :data:`CONFIG_OPTION`) and its values with their labels."""

    name: str
    option: str
    values: tuple
    labels: tuple[str, ...]

    def value_of(self, given: Any) -> tuple[Any, str]:
        """The (value, label) that ``given`` names: one of the axis's labels or values, or a new value."""
        for value, label in zip(self.values, self.labels):
            if given == label or given == value:
                return value, label
        return given, label_of(given, self.option)


@dataclass(frozen=True)
class Point:
    """One run of the grid: the value and label each axis takes."""

    values: dict[str, Any]
    labels: dict[str, str]

    @property
    def name(self) -> str:
        """The run folder's name: ``axis=label`` for each axis, joined with ``__``."""
        return "__".join(f"{axis}={label}" for axis, label in self.labels.items())


@dataclass
class Experiment:
    """A parsed experiment file."""

    path: Path
    axes: list[Axis]
    configs: list[str] = field(default_factory=list)
    overlays: list[str] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    include: list[dict] = field(default_factory=list)
    exclude: list[dict] = field(default_factory=list)
    checkpoint_every_n_batches: int = 1
    description: str = ""
    variables: dict[str, str] = field(default_factory=dict)

    def points(self) -> list[Point]:
        """The product of the axes (first axis slowest), less the ``exclude`` matches, plus the ``include`` points
        not already in it."""
        points = []
        for combination in itertools.product(*(range(len(axis.values)) for axis in self.axes)):
            point = Point({a.name: a.values[i] for a, i in zip(self.axes, combination)},
                          {a.name: a.labels[i] for a, i in zip(self.axes, combination)})
            if not any(self._matches(point, rule) for rule in self.exclude):
                points.append(point)
        for entry in self.include:
            chosen = {axis.name: axis.value_of(entry[axis.name]) for axis in self.axes}
            point = Point({k: v for k, (v, _) in chosen.items()}, {k: label for k, (_, label) in chosen.items()})
            if point.name not in {p.name for p in points}:
                points.append(point)
        return points

    def _matches(self, point: Point, rule: dict) -> bool:
        axes = {axis.name: axis for axis in self.axes}
        return all(axes[name].value_of(given)[1] == point.labels[name] for name, given in rule.items())


def _fail(path: Path, where: str, problem: str) -> ExperimentFileError:
    return ExperimentFileError(f"experiment file {path}: {where} {problem}")


def _file_list(path: Path, data: dict, key: str) -> list[str]:
    value = data.get(key) or []
    value = [value] if isinstance(value, str) else value
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _fail(path, f"'{key}'", "must be a config file path or a list of them")
    for i, item in enumerate(value):
        if not Path(item).is_file():
            raise _fail(path, f"'{key}[{i}]'", f"names {item}, which is not a file (paths are relative to the folder "
                                               "the sweep runs in, as for main.py --config)")
    return value


def _check_option(path: Path, where: str, option: str) -> str:
    if not isinstance(option, str) or not _OPTION_NAME.match(option):
        raise _fail(path, where, f"is {option!r}, not a dotted option such as data.init_args.n (no leading --)")
    if option in SWEEP_OWNED:
        raise _fail(path, where, f"sets {option}, which the sweep sets itself for every point; leave it out")
    return option


def _axis(path: Path, key: str, spec: Any) -> Axis:
    where = f"'axes.{key}'"
    if isinstance(spec, dict):
        unknown = set(spec) - {"option", "values"}
        if unknown or "values" not in spec:
            raise _fail(path, where, "must be a list of values, or a mapping with 'option' and 'values' "
                                     f"(found keys {sorted(spec)})")
        name, option, values = key, spec.get("option", key), spec["values"]
    else:
        name, option, values = key.rsplit(".", 1)[-1], key, spec
    if option != CONFIG_OPTION:
        _check_option(path, f"{where} option", option)
    if isinstance(values, dict):
        labels, values = [label_of(label) for label in values], list(values.values())
    elif isinstance(values, list):
        labels = [label_of(value, option) for value in values]
    else:
        raise _fail(path, f"{where} values", "must be a non-empty list, or a mapping label → value")
    if not values:
        raise _fail(path, f"{where} values", "is empty; give at least one value")
    if len(set(labels)) != len(labels):
        raise _fail(path, f"{where} values", f"give the same folder label twice ({labels}); give them as a "
                                             "mapping label → value")
    if option == CONFIG_OPTION:
        for i, value in enumerate(values):
            if not isinstance(value, str) or not Path(value).is_file():
                raise _fail(path, f"{where} values[{i}]", f"is {value!r}, which is not a config file")
    return Axis(name, option, tuple(values), tuple(labels))


def _points_list(path: Path, data: dict, key: str, axes: list[Axis], complete: bool) -> list[dict]:
    entries = data.get(key) or []
    names = [axis.name for axis in axes]
    if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
        raise _fail(path, f"'{key}'", f"must be a list of mappings axis → value (axes: {', '.join(names)})")
    for i, entry in enumerate(entries):
        unknown = [name for name in entry if name not in names]
        missing = [name for name in names if name not in entry]
        if unknown:
            raise _fail(path, f"'{key}[{i}]'", f"names axis {unknown[0]!r}; the axes are {', '.join(names)}")
        if complete and missing:
            raise _fail(path, f"'{key}[{i}]'", f"gives no value for axis {missing[0]!r}; an included point names "
                                               "every axis")
    return entries


def _variables(path: Path, data: dict, settings: dict[str, str] | None) -> dict[str, str]:
    """The file's ``variables`` (name → default text) with ``settings`` (``--set name=value``) in their place."""
    declared = data.get("variables") or {}
    if not isinstance(declared, dict) or not all(isinstance(v, (str, int, float)) for v in declared.values()):
        raise _fail(path, "'variables'", "must be a mapping name → default value (text or a number)")
    if FOLDER_PLACEHOLDER in declared:
        raise _fail(path, f"'variables.{FOLDER_PLACEHOLDER}'", "is taken: {folder} is each point's run folder; "
                                                               "give the variable another name")
    unknown = [name for name in (settings or {}) if name not in declared]
    if unknown:
        raise ExperimentFileError(f"--set {unknown[0]}=...: experiment file {path} has no variable {unknown[0]!r}; "
                                  f"its variables are {', '.join(map(str, declared)) or 'none'}")
    return {str(name): str(value) for name, value in {**declared, **(settings or {})}.items()}


def _substitute(value: Any, variables: dict[str, str]) -> Any:
    """``value`` with ``{name}`` replaced by each variable's value, in every text it holds (lists and mappings
    included); other braces, such as ``{folder}``, are left as they are."""
    if isinstance(value, str):
        for name, text in variables.items():
            value = value.replace("{" + name + "}", text)
        return value
    if isinstance(value, list):
        return [_substitute(item, variables) for item in value]
    if isinstance(value, dict):
        return {_substitute(key, variables): _substitute(item, variables) for key, item in value.items()}
    return value


def load_experiment(path: Path | str, settings: dict[str, str] | None = None) -> Experiment:
    """Read and check an experiment file (docs/experiments.md), its ``variables`` set from ``settings`` where given
    (``sweep --set name=value``) and substituted into every other field.

    Raises:
        ExperimentFileError: the file is missing, not YAML, or a field is wrong (the message names the field), or
            ``settings`` names a variable the file does not declare.
    """
    path = Path(path)
    if not path.is_file():
        raise ExperimentFileError(f"experiment file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ExperimentFileError(f"experiment file {path} is not valid YAML ({error})") from None
    if not isinstance(data, dict):
        raise ExperimentFileError(f"experiment file {path} must be a mapping with 'axes' (and 'configs', 'options')")
    unknown = [key for key in data if key not in TOP_LEVEL]
    if unknown:
        raise _fail(path, f"field '{unknown[0]}'", f"is not known; the fields are {', '.join(TOP_LEVEL)}")
    variables = _variables(path, data, settings)
    data = {key: (value if key == "variables" else _substitute(value, variables)) for key, value in data.items()}
    axes_spec = data.get("axes")
    if not isinstance(axes_spec, dict) or not axes_spec:
        raise _fail(path, "'axes'", "must be a non-empty mapping: option → list of values")
    axes = [_axis(path, str(key), spec) for key, spec in axes_spec.items()]
    names = [axis.name for axis in axes]
    if len(set(names)) != len(names):
        raise _fail(path, "'axes'", f"give two axes the name {sorted(n for n in names if names.count(n) > 1)[0]!r};"
                                    " name them with the long form (name: {option: ..., values: [...]})")
    options = data.get("options") or {}
    if not isinstance(options, dict):
        raise _fail(path, "'options'", "must be a mapping option → value")
    for option in options:
        _check_option(path, f"'options.{option}'", option)
    every = data.get("checkpoint_every_n_batches", 1)
    if not isinstance(every, int) or isinstance(every, bool) or every < 1:
        raise _fail(path, "'checkpoint_every_n_batches'", f"is {every!r}; give a positive whole number")
    experiment = Experiment(path, axes, _file_list(path, data, "configs"), _file_list(path, data, "overlays"),
                            dict(options), _points_list(path, data, "include", axes, complete=True),
                            _points_list(path, data, "exclude", axes, complete=False), every,
                            str(data.get("description") or ""), variables)
    if not experiment.configs and not any(axis.option == CONFIG_OPTION for axis in axes):
        raise _fail(path, "'configs'", "is empty and no axis stacks a config; name the base config(s)")
    if not experiment.points():
        raise _fail(path, "'exclude'", "leaves no point of the grid")
    return experiment
