"""LightningDataModules, one per source."""

from lit_edit.data.corpus import TextCorpusDataModule
from lit_edit.data.edits import EditDataModule

__all__ = ["EditDataModule", "TextCorpusDataModule"]
