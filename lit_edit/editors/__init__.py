"""Editors: one class per method, registered by name."""

from lit_edit.editors.base import EditContext, Editor, EditOutcome
from lit_edit.editors.locate import FT, MEMIT, ROME

EDITORS: dict[str, type[Editor]] = {cls.name: cls for cls in (FT, MEMIT, ROME)}

__all__ = ["EDITORS", "FT", "MEMIT", "ROME", "EditContext", "EditOutcome", "Editor"]
