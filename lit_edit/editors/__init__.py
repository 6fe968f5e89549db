"""Editors: one class per method, registered by name."""

from lit_edit.editors.base import EditContext, Editor, EditOutcome
from lit_edit.editors.kn import KN
from lit_edit.editors.locate import FT, MEMIT, ROME
from lit_edit.editors.mend import MEND
from lit_edit.editors.rect import RECT
from lit_edit.editors.sequential import COMEBA, D4S, AlphaEdit

EDITORS: dict[str, type[Editor]] = {cls.name: cls for cls in (FT, MEMIT, ROME, KN, MEND, RECT, D4S, COMEBA, AlphaEdit)}

__all__ = ["COMEBA", "D4S", "EDITORS", "FT", "KN", "MEMIT", "MEND", "RECT", "ROME", "AlphaEdit", "EditContext", "EditOutcome",
           "Editor"]
