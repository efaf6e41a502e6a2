"""The one error type every reader of a user's file raises."""
from __future__ import annotations

from workbench.errors import UserError


class DataError(UserError, ValueError):
    """A data file is missing, empty, binary, not UTF-8, malformed or of the wrong shape.

    The message names the file and, where there is one, the line (or frame, or column)."""

    def __init__(self, path, message: str, line: int | None = None):
        self.path = str(path)
        self.line = line
        where = f"{self.path}, line {line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")
