"""Errors a user can act on. The CLI prints their message (no traceback) and exits
with their code. Exit codes are part of the interface (README, "Exit codes")."""

from __future__ import annotations

EXIT_OK = 0  # every claim reproduced or better (or a run with no claims)
EXIT_NOT_REPRODUCED = 1  # at least one claim not reproduced
EXIT_ERROR = 2  # bad input, a crash, or a claim in state `error`
EXIT_DATA_MISSING = 3  # a dataset is missing, unverified or behind a manual (licence) step
EXIT_INTERRUPTED = 130  # Ctrl-C: a resumable checkpoint was left


class ReproError(Exception):
    """An error with a message meant for the user."""

    exit_code = EXIT_ERROR

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(ReproError):
    """Bad input on the command line: unknown paper, bad --set, bad option value."""


class DataMissing(ReproError):
    """A dataset is not present or not verified; `hint` holds the exact command."""

    exit_code = EXIT_DATA_MISSING


class ManualStepRequired(DataMissing):
    """The data sits behind a licence form or a manual download: `hint` says what to do."""


class ChecksumError(ReproError):
    """A downloaded or placed file does not match its published checksum."""

    exit_code = EXIT_DATA_MISSING


class UnsafeArchive(ReproError):
    """An archive member would land outside the target folder (absolute path, `..`, link out)."""
