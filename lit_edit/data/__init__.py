"""LightningDataModules, one per source."""

from lit_edit.data.corpus import TextCorpusDataModule

__all__ = ["TextCorpusDataModule"]
