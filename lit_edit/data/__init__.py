"""LightningDataModules, one per source."""

from lit_edit.data.corpus import TextCorpusDataModule
from lit_edit.data.edits import EditDataModule
from lit_edit.data.mend import MendDataModule

__all__ = ["EditDataModule", "MendDataModule", "TextCorpusDataModule"]
