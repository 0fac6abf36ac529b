"""Errors a user can fix. The CLI prints their message and exits non-zero, never a traceback."""

from __future__ import annotations


class MekitError(Exception):
    """A problem with the user's input or setup; the message says what to change."""


class SampleError(MekitError):
    """One sample cannot be used; a run skips it, lists it in the report and goes on."""

    def __init__(self, sample_id: str, reason: str) -> None:
        super().__init__(f"{sample_id}: {reason}")
        self.sample_id = sample_id
        self.reason = reason
