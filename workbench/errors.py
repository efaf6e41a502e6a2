"""The one base class for errors a user can fix.

Every error whose message tells the user what to change in their input (a preset field,
a data file and line, a weights file, a command-line argument, a save location) derives
from ``UserError``. Callers sort errors by this type, never by class name: the CLI prints
one line and exits 2, the window shows the message as it is. Anything else is a defect
(the CLI says "internal error", the window adds the class name).

Each subclass also keeps the built-in base it always had (ValueError, RuntimeError,
OSError), so code catching those goes on working.
"""
from __future__ import annotations


class UserError(Exception):
    """An error the user can fix; its message names the field, file or line."""


class UsageError(UserError):
    """Invalid input from the command line (an argument, a run folder)."""


class TrainingError(UserError, RuntimeError):
    """Training cannot go on as set up (out of memory, no such device); the message says what to change."""


# Errors from the operating system that mean "that path is not usable" (missing, a folder,
# not readable, not text): the user's to fix as well, raised by open()/read_text() as is.
OS_USER_ERRORS: tuple[type[BaseException], ...] = (FileNotFoundError, IsADirectoryError, PermissionError,
                                                   UnicodeDecodeError)


def is_user_error(exc: BaseException) -> bool:
    """Whether ``exc`` is the user's to fix (its message is enough, no class name needed)."""
    return isinstance(exc, (UserError, *OS_USER_ERRORS))


def one_line(exc: BaseException) -> str:
    """The message on one line (the class name when it has none)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def describe(exc: BaseException) -> str:
    """One line for a status bar or a terminal: a user's error as its message, anything
    else with its class name in front (a defect to report)."""
    if is_user_error(exc):
        return one_line(exc)
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
