"""Editors: one class per method (``lit_edit/editors/<method>.py``), registered by name in :data:`EDITORS`."""

from lit_edit.editors.alphaedit import AlphaEdit
from lit_edit.editors.base import EditContext, Editor, EditOutcome
from lit_edit.editors.comeba import COMEBA
from lit_edit.editors.d4s import D4S
from lit_edit.editors.ft import FT
from lit_edit.editors.kn import KN
from lit_edit.editors.memit import MEMIT
from lit_edit.editors.mend import MEND
from lit_edit.editors.rect import RECT
from lit_edit.editors.rome import ROME

METHODS: tuple[type[Editor], ...] = (FT, MEMIT, ROME, KN, MEND, RECT, D4S, COMEBA, AlphaEdit)
"""Every method, in the order ``lit_edit.methods()`` and ``test --help`` list them; a new method adds its class here."""

EDITORS: dict[str, type[Editor]] = {cls.name: cls for cls in METHODS}

__all__ = ["COMEBA", "D4S", "EDITORS", "FT", "KN", "MEMIT", "MEND", "METHODS", "RECT", "ROME", "AlphaEdit",
           "EditContext", "EditOutcome", "Editor"]
