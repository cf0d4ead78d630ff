"""The README and docs/ stay a guide and a library: the README short, every link resolving, every file in docs/ cited
by a page, and every command they show accepted by its script as written; the README's recipe runs on tiny settings."""

from __future__ import annotations

import importlib.util
import re
import shlex
import subprocess
import sys
from pathlib import Path

from utils.paths import REPO_ROOT

PAGES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").rglob("*.md"))]
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_CODE = re.compile(r"```(?:bash|sh)\n(.*?)```", re.S)


def _commands(page: Path) -> list[tuple[str, list[str]]]:
    """(script, argv) of every ``python <script>.py ...`` or ``torchrun ... train.py ...`` line in ``page``'s code
    blocks (continuations joined, comments and ``VAR=value`` prefixes dropped)."""
    out = []
    for block in _CODE.findall(page.read_text()):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(re.sub(r"\[[^\]]*\]", "", line), comments=True)  # optional parts ([--dynamic]) left out
            scripts = [i for i, w in enumerate(words) if w.endswith(".py") and (i == 0 or words[i - 1] in
                                                                                  ("python", "python3") or
                                                                                  words[0] == "torchrun")]
            if scripts:
                i = scripts[0]
                out.append((words[i], words[i + 1:]))
    return out


def _parser(script: str):  # noqa: ANN202 - the script's parse_opt, None for a script without one
    path = REPO_ROOT / script
    spec = importlib.util.spec_from_file_location(f"_doc_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, "parse_opt", None)


def test_the_readme_is_a_short_guide() -> None:
    lines = (REPO_ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 220, f"README.md has {len(lines)} lines; move studies and details to docs/"


def test_every_relative_link_resolves() -> None:
    broken = []
    for page in PAGES:
        for target in _LINK.findall(page.read_text()):
            if re.match(r"[a-z]+://|mailto:|#", target):
                continue
            if not (page.parent / target.split("#")[0]).exists():
                broken.append(f"{page.relative_to(REPO_ROOT)}: {target}")
    assert not broken, "links to nothing:\n" + "\n".join(broken)


def test_every_file_in_docs_is_cited_and_every_page_indexed() -> None:
    text = {p: p.read_text() for p in PAGES}
    index = (REPO_ROOT / "docs" / "README.md").read_text()
    files = [f for f in (REPO_ROOT / "docs").rglob("*") if f.is_file() and f != REPO_ROOT / "docs" / "README.md"]
    uncited = [f for f in files if not any(f.name in t for p, t in text.items() if p != f)]
    assert not uncited, "files in docs/ no page cites:\n" + "\n".join(str(f.relative_to(REPO_ROOT)) for f in uncited)
    pages = [p for p in PAGES if p.parent.is_relative_to(REPO_ROOT / "docs") and p != REPO_ROOT / "docs" / "README.md"]
    missing = [p for p in pages if p.name not in index]
    assert not missing, "pages docs/README.md does not list:\n" + "\n".join(map(str, missing))


def test_every_command_shown_parses_as_written() -> None:
    """Each command's flags are its script's (a renamed or dropped flag fails here). Placeholders are read the way a
    user fills them: an optional ``[--dynamic]`` left out, a command with an ``E`` for a number skipped."""
    checked, failed = 0, []
    for page in PAGES:
        for script, argv in _commands(page):
            if any(re.fullmatch(r"[A-Z]", a) for a in argv) or not (REPO_ROOT / script).is_file():
                continue
            parse = _parser(script)
            if parse is None:  # models/yolo.py: a model summary, no options class
                continue
            try:
                parse(argv)
                checked += 1
            except SystemExit:
                failed.append(f"{page.relative_to(REPO_ROOT)}: {script} {' '.join(argv)}")
    assert not failed, "commands their script refuses:\n" + "\n".join(failed)
    assert checked >= 20  # the README's three and the docs' examples


def test_the_readmes_recipe_runs_on_tiny_settings(tmp_path: Path, tiny_data: Path, yolov5n_pt: Path) -> None:
    """The README's train and detect commands as written, with only the data, size, epochs, files and folders made
    tiny: detect.py on an ONNX file takes the input size from its metadata, as on slim.py's chosen model (its slim.py
    command runs the same way, on tiny settings, in tests/test_search.py)."""
    import train

    cmds = dict(_commands(REPO_ROOT / "README.md"))
    tiny = {"--data": str(tiny_data), "--imgsz": "64", "--epochs": "1", "--weights": str(yolov5n_pt)}

    def adapt(argv: list[str], **values: str) -> list[str]:
        """``argv`` with the value after each flag in ``values`` replaced."""
        return [values.get(argv[i - 1], a) if i else a for i, a in enumerate(argv)]

    train.main(adapt(cmds["train.py"], **tiny) + ["--project", str(tmp_path), "--name", "t", "--workers", "0"])
    best = tmp_path / "t" / "weights" / "best.pt"
    assert best.is_file()
    # Scripts in processes of their own: OpenVINO loaded into pytest's process makes a later fork crash the suite.
    p = subprocess.run([sys.executable, "export.py", "--weights", str(best), "--include", "onnx", "--imgsz", "128",
                        "96"],  # a fixed rectangle, as slim.py's search may choose: (h, w) from its metadata
                       cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    photo = sorted(Path(tiny_data.parent / "val.txt").read_text().split())[0]
    p = subprocess.run([sys.executable, "detect.py", *adapt(cmds["detect.py"], **{
        "--weights": str(best.with_suffix(".onnx")), "--source": photo}), "--project", str(tmp_path), "--name", "d"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-2000:]
    assert (tmp_path / "d" / Path(photo).name).stat().st_size > 1000
    assert "at shape (1, 3, 128, 96)" in out, out[-2000:]  # the export's (h, w), from its metadata
