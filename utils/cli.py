"""Shared entry-point behaviour for the scripts: logging set-up, clear one-line errors instead of tracebacks, and the
flag parser that reads a command line or a script's ``run(**kwargs)`` keywords (the Python API)."""

from __future__ import annotations

import argparse
import difflib
import errno
import logging
import os
import sys
from pathlib import Path
from typing import Any, Callable, Mapping, NoReturn, Sequence, TypeVar, Union

__all__ = ["run_script", "python_api", "setup_logging", "USER_ERRORS", "check_common_flags", "Flags", "FlagError",
           "ScriptParser"]

T = TypeVar("T")

# Errors caused by user input (bad flags, files, configs): shown as one line; anything else keeps its traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (FileNotFoundError, ValueError, KeyError, PermissionError)
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)  # OSErrors that are the user's to fix: reported like USER_ERRORS


def run_script(fn: Callable[[], T]) -> T:
    """Run a script's main with INFO logging; exit with status 2 and a one-line message on a user error, 130 and one
    line on Ctrl-C.

    Set ``YOLO_TRACEBACK=1`` to see the full traceback of such errors.
    """
    setup_logging()
    try:
        return fn()
    except KeyboardInterrupt as e:  # Ctrl-C: one line (what the script can say about resuming), exit 130 as shells do
        print(f"\nInterrupted{': ' + str(e) if str(e) else ''}", file=sys.stderr)
        raise SystemExit(130) from None
    except (*USER_ERRORS, OSError) as e:
        if os.environ.get("YOLO_TRACEBACK") or (type(e) is OSError and e.errno not in _DISK_FULL):
            raise
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        if type(e) is OSError:  # disk full: the message says where
            msg = e.strerror if e.strerror and "no space" in e.strerror else f"no space left on device ({e})"
        print(f"ERROR: {msg}", file=sys.stderr)
        raise SystemExit(2) from None


def python_api(main: Callable[[Any], dict], script: str, example: str) -> Callable[..., dict]:
    """A script's ``run(**kwargs)``: its flags as keyword arguments, dashes as underscores, e.g. ``example``.

    The keywords go through the script's own parser (``main`` takes them in place of a command line), the command
    line's INFO lines are logged (:func:`setup_logging`), and ``run`` returns what ``main`` returns. It raises
    ``TypeError`` for a keyword that is no flag of the script (naming the closest flag) and :class:`FlagError` (a
    ``ValueError``) with the command line's message for a value the command line refuses.
    """
    def run(**kwargs: Any) -> dict:
        setup_logging()
        return main(kwargs)

    run.__doc__ = f"{script} from Python: ``{example}``.\n\n" + (python_api.__doc__ or "").split("\n\n", 1)[1]
    run.__module__ = main.__module__
    return run


def setup_logging() -> None:
    """Show the library's INFO lines (``Loaded ...``, dataset scans, epoch headers, summaries) as plain messages on
    stderr: the command line's set-up, also done by every script's ``run(**kwargs)`` so that a notebook or a Python
    program sees the same lines. It configures the root logger only where nothing has configured it yet (a program's
    own logging set-up is kept), so repeated calls never add a second handler."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")


# A script's flags: a command line (None: sys.argv), or keyword arguments as its run(**kwargs) takes them.
Flags = Union[Sequence[str], Mapping[str, Any], None]


class FlagError(ValueError):
    """A flag value that a script refuses, raised instead of exiting when the flags came as keyword arguments."""


class ScriptParser(argparse.ArgumentParser):
    """The scripts' flag parser. From a command line a bad flag prints the usage line and exits with status 2, as
    argparse does; from a script's ``run(**kwargs)`` the same one-line message is raised as :class:`FlagError`, so
    that a notebook or a sweep gets an exception it can catch, not ``SystemExit``. Keywords become the command line
    they stand for (:meth:`to_argv`), so both ways share one set of flags, conversions and checks."""

    _raising = False

    def parse_flags(self, flags: Flags = None) -> argparse.Namespace:
        """Parse a command line (list of strings; None: ``sys.argv``) or keyword arguments (a mapping)."""
        if isinstance(flags, Mapping):
            self._raising = True
            return self.parse_args(self.to_argv(flags))
        return self.parse_args(flags)

    def parse_strict(self, argv: Sequence[str]) -> argparse.Namespace:
        """Parse a command line built by a program (a sweep's extra flags): a bad flag raises FlagError, no exit."""
        self._raising = True
        return self.parse_args(list(argv))

    def error(self, message: str) -> NoReturn:
        """Exit with the usage line on a command line; raise FlagError(message) for keyword arguments."""
        if self._raising:
            raise FlagError(message)
        super().error(message)

    def to_argv(self, kwargs: Mapping[str, Any]) -> list[str]:
        """The command line that keyword arguments stand for. A key is a flag's name with dashes as underscores (its
        argparse ``dest``: ``batch_size`` for ``--batch-size``, ``fold_beta=False`` for ``--no-fold-beta``). A switch
        takes True or False; a flag with an optional value (``resume``, ``cache``) True, False or the value; a
        many-valued flag a list (or one value); None only leaves a flag whose default is None unset. Every other
        value goes in as its text, so it is converted and checked exactly as on the command line.

        Raises:
            TypeError: a key that names no flag (with the closest name), or a switch given other than True/False.
            FlagError: None for a flag whose default is not None.
        """
        # argparse keeps its actions in a private list; it is the one place that maps dests to flags.
        actions = {a.dest: a for a in self._actions if a.option_strings and a.dest != "help"}
        argv: list[str] = []
        for key, value in kwargs.items():
            action = actions.get(key)
            if action is None:
                close = difflib.get_close_matches(key, list(actions), n=1)
                hint = f"did you mean '{close[0]}'?" if close else f"its keywords: {', '.join(sorted(actions))}"
                raise TypeError(f"{self.prog} has no flag for the keyword argument '{key}' ({hint})")
            flag = next((s for s in action.option_strings if s.startswith("--")), action.option_strings[0])
            if action.nargs == 0:  # store_true / store_false: the flag is given when the value is its const
                if not isinstance(value, bool):
                    raise TypeError(f"{key} is a switch ({flag}): give True or False, not {value!r}")
                argv += [flag] if value == action.const else []
            elif value is None:
                if action.default is not None:
                    self.error(f"{key}=None: {flag} has no unset state (default {action.default!r}); "
                               "give a value or leave it out")
            elif action.nargs == "?" and isinstance(value, bool):  # True: the bare flag (its const), False: unset
                argv += [flag] if value else []
            elif action.nargs in ("+", "*"):
                argv += [flag, *map(str, value if isinstance(value, (list, tuple)) else [value])]
            else:  # --flag=value: a value that starts with '-' is not taken for a flag
                argv.append(f"{flag}={value}")
        return argv


# Flags several scripts share (argparse dest -> flag, lowest allowed value); checked once here for every script.
_AT_LEAST = {"imgsz": ("--imgsz", 1), "batch_size": ("--batch-size", 1), "max_det": ("--max-det", 1),
             "workers": ("--workers", 0), "epochs": ("--epochs", 1), "line_thickness": ("--line-thickness", 1)}
_UNIT = {"conf_thres": "--conf-thres", "iou_thres": "--iou-thres"}


def check_common_flags(p: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    """Refuse shared flags out of range at parse time, naming the flag (``p.error``: usage line, exit code 2):
    image size, batch size, ``--max-det``, ``--epochs`` and ``--line-thickness`` >= 1, ``--workers`` >= 0,
    thresholds in [0, 1], and a ``--project`` that is an existing file."""
    for dest, (flag, lo) in _AT_LEAST.items():
        v = getattr(a, dest, None)
        for x in (v if isinstance(v, (list, tuple)) else [v]):
            if isinstance(x, int) and x < lo:
                p.error(f"{flag} must be >= {lo}, got {v}")
    for dest, flag in _UNIT.items():
        v = getattr(a, dest, None)
        if v is not None and not 0.0 <= v <= 1.0:
            p.error(f"{flag} must be in [0, 1], got {v}")
    project = getattr(a, "project", None)
    if project and Path(project).exists() and not Path(project).is_dir():
        p.error(f"--project {project} is a file, not a folder")
