"""Options declared once: a script's flags are the fields of its options dataclass.

Each field carries its flags, help text, choices and range check (:func:`opt`); the script's parser is generated from
the dataclass (:func:`build_parser`), the same checks run on a command line, on ``run(**kwargs)`` and on an options
object a program builds (:func:`check_options`), and an options object renders back into the command line that
stands for it (:func:`to_argv`), which is how the sweep writes its stage commands. Renaming a field therefore breaks
its callers where they construct the object (a ``TypeError`` at plan or test time), never in a stage's command.

    @dataclass
    class Options:
        imgsz: int = opt(640, "--imgsz", "--img", help="image size (pixels)", check=at_least(1))

        def validate(self, given: Collection[str] = ()) -> None:   # cross-field checks (optional)
            ...                                                     # raise FlagError("...") naming the flags
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Collection, Mapping, Sequence, TypeVar

from utils.cli import Flags, FlagError, ScriptParser

__all__ = ["Check", "Flag", "opt", "imgsz_opt", "at_least", "above", "in_range", "not_empty", "not_a_file", "all_of",
           "build_parser",
           "parse_options", "check_options", "to_argv", "with_flags", "or_auto", "changed_fields", "flag_name",
           "spellings", "argument_group", "refusal", "stored_value_refusal"]

T = TypeVar("T")
Check = Callable[[Any], "str | None"]  # a value -> why it is refused (the flag is put in front), or None


@dataclass(frozen=True)
class Flag:
    """A field's command-line side: what :func:`opt` stores in the field's metadata under ``"cli"``."""

    flags: tuple[str, ...]
    help: str = ""
    type: Callable[[str], Any] | None = None
    choices: tuple | None = None
    nargs: str | None = None
    const: Any = None
    check: Check | None = None
    group: str | None = None
    required: bool = False


def opt(default: Any, *flags: str, help: str = "", type: Callable[[str], Any] | None = None,  # noqa: A002
        choices: Sequence | None = None, nargs: str | None = None, const: Any = None, check: Check | None = None,
        group: str | None = None, required: bool = False) -> Any:
    """A dataclass field that is also a flag.

    Args:
        default: the default (a list is copied per instance). A bool is a switch: ``False`` makes a ``store_true``
            flag, ``True`` a ``store_false`` one (name it ``--no-...``).
        flags: its spellings, the first is the one :func:`to_argv` writes (the forks' aliases after it).
        help: help text as argparse takes it (``%%`` for a percent sign).
        type: converts the text (default: the type of ``default``; give it for lists, None or unions).
        choices: the allowed values.
        nargs: ``"?"`` (then ``const`` is the bare flag's value) or ``"+"``.
        check: the range check, e.g. :func:`at_least`; it runs for the command line, ``run(**kwargs)`` and
            :func:`check_options`.
        group: the help section (argparse argument group) the flag is listed under.
        required: the flag must be given: the usage line shows it without brackets and a command line without it is
            argparse's usage error (exit 2, the flag named; :class:`~utils.cli.FlagError` from ``run(**kwargs)``).
            ``default`` then stands for "not given": :func:`check_options` and :func:`refusal` refuse it in an
            options object built in Python.
    """
    if not flags:
        raise TypeError("opt() needs at least one flag")
    meta = {"cli": Flag(tuple(flags), help, type, tuple(choices) if choices is not None else None, nargs, const,
                        check, group, required)}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


def imgsz_opt(default: int | list[int], help: str, *, minimum: int = 1, nargs: str | None = None,  # noqa: A002
              group: str | None = None, note: str = "") -> Any:
    """The image-size flag every options class declares, with YOLOv5's three spellings (``--imgsz``, ``--img``,
    ``--img-size``) and one bound: a size (or each of a list's, with ``nargs="+"``) of at least ``minimum`` pixels
    (``note`` says what a smaller value, 0 say, means)."""
    return opt(default, "--imgsz", "--img", "--img-size", help=help, type=int if nargs else None, nargs=nargs,
               check=at_least(minimum, note), group=group)


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _bound(ok: Callable[[float], bool], rule: str, note: str) -> Check:
    """Refuse numbers that fail ``ok`` (every item of a list; non-numbers such as ``'auto'`` pass): "must be
    ``rule`` (``note``), got ``v``"."""
    def check(v: Any) -> str | None:
        items = v if isinstance(v, (list, tuple)) else [v]
        return None if all(not _number(x) or ok(x) for x in items) else \
            f"must be {rule}{f' ({note})' if note else ''}, got {v}"
    return check


def at_least(lo: float, note: str = "") -> Check:
    """Refuse numbers below ``lo`` (every item of a list; non-numbers such as ``'auto'`` pass)."""
    return _bound(lambda x: x >= lo, f">= {lo}", note)


def above(lo: float, note: str = "") -> Check:
    """Refuse numbers not above ``lo``, ``lo`` itself included (every item of a list; non-numbers pass)."""
    return _bound(lambda x: x > lo, f"> {lo}", note)


def in_range(lo: float, hi: float, closed: bool = False, note: str = "", open_lo: bool = False) -> Check:
    """Refuse numbers outside ``[lo, hi)`` (every item of a list; non-numbers pass).

    Args:
        closed: let ``hi`` in: ``[lo, hi]``.
        open_lo: keep ``lo`` out: ``(lo, hi)`` (``(lo, hi]`` with ``closed``).
    """
    def ok(x: float) -> bool:
        return (lo < x if open_lo else lo <= x) and (x <= hi if closed else x < hi)
    return _bound(ok, f"in {'(' if open_lo else '['}{lo}, {hi}{']' if closed else ')'}", note)


def not_empty(v: Any) -> str | None:
    """Refuse an empty value (text, list); a default that stands for "not given" is :func:`opt`'s ``required``."""
    return None if v else "must not be empty"


def all_of(*checks: Check) -> Check:
    """A check made of ``checks``: the first one's refusal, else None."""
    def check(v: Any) -> str | None:
        return next((why for c in checks if (why := c(v))), None)
    return check


def or_auto(convert: Callable[[str], Any], what: str) -> Callable[[str], Any]:
    """A flag type that takes ``'auto'`` (any case) or a value ``convert`` reads, e.g. ``or_auto(float, "number")``."""
    def parse(text: str) -> Any:
        if text.strip().lower() == "auto":
            return "auto"
        try:
            return convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {what} or 'auto', got '{text}'") from None
    return parse


def not_a_file(v: Any) -> str | None:
    """Refuse a folder setting (``--project``) that names an existing file."""
    return f"{v} is a file, not a folder" if v and Path(v).exists() and not Path(v).is_dir() else None


def _spec(f: dataclasses.Field) -> Flag | None:
    return f.metadata.get("cli")


def _default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default_factory is not MISSING else f.default


def _is_switch(f: dataclasses.Field) -> bool:
    return isinstance(_default(f), bool) and _spec(f).nargs is None


def flag_name(cls: type, name: str) -> str:
    """The flag :func:`to_argv` writes for field ``name`` of ``cls`` (its first spelling).

    Raises:
        KeyError: ``cls`` has no flag field of that name.
    """
    f = next((f for f in fields(cls) if f.name == name and _spec(f)), None)
    if f is None:
        raise KeyError(f"{cls.__name__} has no flag field '{name}'")
    return _spec(f).flags[0]


def spellings(cls: type, *names: str) -> tuple[str, ...]:
    """Every spelling of the flags of fields ``names`` of ``cls`` (aliases included).

    Raises:
        KeyError: a name that is no flag field of ``cls``.
    """
    specs = {f.name: _spec(f) for f in fields(cls) if _spec(f)}
    missing = [n for n in names if n not in specs]
    if missing:
        raise KeyError(f"{cls.__name__} has no flag field {', '.join(map(repr, missing))}")
    return tuple(flag for n in names for flag in specs[n].flags)


def build_parser(cls: type, prog: str, description: str | None = None,
                 formatter_class: type = argparse.RawDescriptionHelpFormatter, base: Any = None,
                 suppress: bool = False) -> ScriptParser:
    """The argparse parser of ``cls``'s flag fields, in field order, grouped by their ``group``.

    Args:
        cls: an options dataclass whose fields were declared with :func:`opt` (fields without flags are skipped).
        prog, description, formatter_class: as for ``argparse.ArgumentParser``.
        base: an instance whose values are the defaults (default: the fields' own defaults).
        suppress: leave unset flags out of the result (to learn which flags were given).
    """
    p = ScriptParser(prog=prog, description=description, formatter_class=formatter_class)
    groups: dict[str, argparse._ArgumentGroup] = {}
    for f in fields(cls):
        s = _spec(f)
        if s is None:
            continue
        target = p if s.group is None else groups.get(s.group) or groups.setdefault(s.group, p.add_argument_group(s.group))
        default = argparse.SUPPRESS if suppress else getattr(base, f.name) if base is not None else _default(f)
        kw: dict[str, Any] = {"dest": f.name, "default": default, "help": s.help}
        if s.required and not suppress:  # suppress parses part of a command line (what was given): nothing is due
            kw["required"] = True
        if _is_switch(f):
            kw["action"] = "store_false" if _default(f) else "store_true"
        else:
            d = _default(f)
            kw["type"] = s.type or (type(d) if isinstance(d, (int, float, str)) else str)
            for k in ("choices", "nargs", "const"):
                if getattr(s, k) is not None:
                    kw[k] = getattr(s, k)
        target.add_argument(*s.flags, **kw)
    return p


def argument_group(parser: argparse.ArgumentParser, title: str) -> argparse._ArgumentGroup:
    """The help section of ``parser`` titled ``title`` (one :func:`build_parser` made for a field ``group``), made if
    there is none: where a script declares a flag by hand beside the generated ones of that section (a second
    ``add_argument_group`` with the same title would print the section twice)."""
    # argparse keeps its groups in a private list; it offers no other way back to a group once made.
    found = next((g for g in parser._action_groups if g.title == title), None)
    return found if found is not None else parser.add_argument_group(title)


def changed_fields(options: Any) -> list[str]:
    """The flag fields of ``options`` whose value differs from the field's default."""
    return [f.name for f in fields(options) if _spec(f) and getattr(options, f.name) != _default(f)]


def refusal(cls: type, name: str, value: Any) -> str | None:
    """Why field ``name`` of ``cls`` refuses ``value`` (not one of its choices, a required field's default, or its
    check's reason), else None: a value read from elsewhere than the command line (a YAML file) checked as its flag
    would be.

    Raises:
        KeyError: ``cls`` has no flag field of that name.
    """
    flag_name(cls, name)  # the KeyError
    f = next(f for f in fields(cls) if f.name == name)
    s = _spec(f)
    if s.choices is not None and value not in s.choices:
        return f"must be one of {', '.join(map(str, s.choices))}, got {value!r}"
    return _refused(f, value)


_TYPES: dict[str, Callable[[Any], bool]] = {
    "bool": lambda v: isinstance(v, bool),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
    "None": lambda v: v is None,
    "list[int]": lambda v: isinstance(v, list) and all(_TYPES["int"](x) for x in v),
    "list[float]": lambda v: isinstance(v, list) and all(_TYPES["float"](x) for x in v),
    "list[str]": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
}


def stored_value_refusal(cls: type, name: str, value: Any) -> str | None:
    """Why a value stored in a file (a checkpoint's training options) does not fit field ``name`` of ``cls``: not of
    the field's declared type, or refused by its flag's checks (:func:`refusal`); else None."""
    f = next(f for f in fields(cls) if f.name == name)
    if value == _default(f) and type(value) is type(_default(f)):
        return None
    kinds = [k.strip() for k in str(f.type).split("|")]
    if all(k in _TYPES for k in kinds) and not any(_TYPES[k](value) for k in kinds):
        return f"must be {' or '.join(kinds)}, got {value!r}"
    return refusal(cls, name, value) if _spec(f) else None


def _refused(f: dataclasses.Field, value: Any) -> str | None:
    """Why flag field ``f`` refuses ``value``: a required one left at its default, or its check's reason."""
    s = _spec(f)
    if s.required and value == _default(f):
        return f"is required{': ' + s.help.replace('%%', '%') if s.help else ''}"  # help text is argparse's
    return s.check(value) if s.check is not None else None


def check_options(options: Any, given: Collection[str] | None = None) -> None:
    """Run every field's range check (and refuse a required field left at its default), then the class's cross-field
    ``validate(given)`` if it has one.

    Args:
        options: an options dataclass instance.
        given: the fields that were set explicitly (default: those that differ from their defaults).

    Raises:
        FlagError: the first refusal, naming the flag (``--percent must be in [0, 1), got 1.5``).
    """
    for f in fields(options):
        s = _spec(f)
        if s is not None and (why := _refused(f, getattr(options, f.name))):
            raise FlagError(f"{s.flags[0]} {why}")
    validate = getattr(options, "validate", None)
    if validate is not None:
        validate(changed_fields(options) if given is None else given)


def parse_options(cls: type[T], flags: Flags, prog: str, description: str | None = None,
                  formatter_class: type = argparse.RawDescriptionHelpFormatter) -> T:
    """Parse a command line (None: ``sys.argv``) or ``run(**kwargs)`` keywords into ``cls``, checked.

    A command line's bad flag prints the usage line and exits with status 2 (``prog: error: --flag ...``); keywords
    raise :class:`~utils.cli.FlagError` with the same message (:class:`~utils.cli.ScriptParser`).
    """
    p = build_parser(cls, prog, description, formatter_class)
    options = cls(**vars(p.parse_flags(flags)))
    argv = p.to_argv(flags) if isinstance(flags, Mapping) else flags
    given = vars(build_parser(cls, prog, suppress=True).parse_known_args(argv)[0])
    try:
        check_options(options, set(given))
    except FlagError as e:
        p.error(str(e))
    return options


def _text(v: Any) -> str:
    """A value as the command line writes it: floats as short as they stay exact (0.03, 1, 1e-05)."""
    if isinstance(v, float):
        short = format(v, "g")
        return short if float(short) == v else repr(v)
    return str(v)


def _pair(flag: str, value: Any) -> list[str]:
    text = _text(value)
    return [f"{flag}={text}"] if text.startswith("-") else [flag, text]  # '-x' would be taken for a flag


def to_argv(options: Any, only_changed: bool = True) -> list[str]:
    """The command line that ``options`` stands for, in field order, each flag in its first spelling.

    Args:
        options: an options dataclass instance (fields declared with :func:`opt`).
        only_changed: leave out flags whose value is the field's default (a switch at its default is always left out;
            so is a value of None).

    The result parses back into equal options with the class's generated parser.
    """
    argv: list[str] = []
    for f in fields(options):
        s = _spec(f)
        if s is None:
            continue
        v, d, flag = getattr(options, f.name), _default(f), s.flags[0]
        if (only_changed and v == d) or v is None:
            continue
        if _is_switch(f):
            argv += [flag] if v != d else []
        elif s.nargs == "?" and (v is True or v == s.const):
            argv.append(flag)
        elif s.nargs in ("+", "*"):
            argv += [flag, *map(_text, v)]
        else:
            argv += _pair(flag, v)
    return argv


def with_flags(options: T, argv: Sequence[str], prog: str) -> T:
    """``options`` with the flags of a command line applied on top (e.g. a sweep's extra flags for one stage), checked
    as the script would check them.

    Raises:
        FlagError: an unknown flag, a bad value or a failed check, with the script's message.
    """
    cls = type(options)
    given = vars(build_parser(cls, prog, suppress=True).parse_strict(argv))
    out = cls(**{**dataclasses.asdict(options), **given})
    check_options(out)
    return out
