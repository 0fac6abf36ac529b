"""Corpora: loaders that turn a corpus on disk into `Sample` records."""

from mekit.data.schema import LoadResult, Sample, Skipped

__all__ = ["LoadResult", "Sample", "Skipped"]
