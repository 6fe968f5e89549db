"""Editors: one class per method, each in its own module ``lit_edit/editors/<method>.py``.

The registry :data:`EDITORS` (method name → class) is built from the modules of this package: every
:class:`~lit_edit.editors.base.Editor` subclass a module defines is registered under its ``name`` and exported as
``lit_edit.editors.<Class>`` (what a config's ``class_path`` names), so a new method only adds its module.
"""

import importlib
import pkgutil

from lit_edit.editors.base import EditContext, Editor, EditOutcome


def _discovered() -> dict[str, type[Editor]]:
    """Every Editor subclass defined in a module of this package that sets its own ``name``, by that name, in
    module order."""
    found: dict[str, type[Editor]] = {}
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda info: info.name):
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        for cls in vars(module).values():
            if (isinstance(cls, type) and issubclass(cls, Editor) and cls.name != Editor.name
                    and cls.__module__ == module.__name__):
                if cls.name in found:
                    raise RuntimeError(f"two editors are named {cls.name!r}: {found[cls.name].__module__}."
                                       f"{found[cls.name].__name__} and {module.__name__}.{cls.__name__}")
                found[cls.name] = cls
    return found


EDITORS: dict[str, type[Editor]] = _discovered()
globals().update({cls.__name__: cls for cls in EDITORS.values()})

__all__ = ["EDITORS", "EditContext", "EditOutcome", "Editor", *(cls.__name__ for cls in EDITORS.values())]
