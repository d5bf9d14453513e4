"""The CLI's own failure type."""

from __future__ import annotations


class CliError(Exception):
    """A command failed; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code
