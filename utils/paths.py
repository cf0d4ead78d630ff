"""Where things live: the repo, the datasets and weights directories, and incremented run directories."""

from __future__ import annotations

import os
import time
from pathlib import Path

__all__ = ["REPO_ROOT", "datasets_dir", "weights_dir", "increment_path", "short_names", "RunLock"]

REPO_ROOT = Path(__file__).resolve().parents[1]


def datasets_dir() -> Path:
    """Root for relative dataset ``path`` entries: ``$YOLO_DATASETS_DIR``, else ``<repo>/../datasets``."""
    return Path(os.environ.get("YOLO_DATASETS_DIR") or REPO_ROOT.parent / "datasets").expanduser().resolve()


def weights_dir() -> Path | None:
    """Extra directory searched for ``--weights`` names: ``$YOLO_WEIGHTS_DIR`` (None when unset)."""
    v = os.environ.get("YOLO_WEIGHTS_DIR")
    return Path(v).expanduser().resolve() if v else None


def short_names(paths: list[str | Path]) -> list[str]:
    """The shortest trailing part of each path that tells it from the others, to name table rows:
    ``runs/a/weights/best.pt`` and ``runs/b/weights/best.pt`` -> ``a/weights/best.pt``, ``b/weights/best.pt``; a
    file named twice gets ``#2``, ``#3``... after its later mentions."""
    parts = [Path(p).parts or (str(p),) for p in paths]
    names = []
    for i, ps in enumerate(parts):
        others = [q for j, q in enumerate(parts) if j != i and q != ps]
        k = 1
        while k < len(ps) and any(q[-k:] == ps[-k:] for q in others):
            k += 1
        names.append("/".join(ps[-k:]))
    seen: dict[str, int] = {}
    for i, n in enumerate(names):
        seen[n] = seen.get(n, 0) + 1
        if seen[n] > 1:
            names[i] = f"{n}#{seen[n]}"
    return names


def increment_path(path: str | Path, exist_ok: bool = False, mkdir: bool = False) -> Path:
    """``runs/train/exp`` -> ``runs/train/exp2``, ``exp3``... (the first free one), unless ``exist_ok``.

    With ``mkdir`` the choice is atomic: each candidate is claimed by creating it (``os.mkdir`` fails when another
    process made it first), so runs started at the same moment get different folders.
    """
    path = Path(path)
    try:
        if exist_ok:
            if mkdir:
                path.mkdir(parents=True, exist_ok=True)
            return path
        base, suffix = (path.with_suffix(""), path.suffix) if path.is_file() else (path, "")
        n = 1
        while True:
            cand = path if n == 1 else base.parent / f"{base.name}{n}{suffix}"
            if not mkdir:
                if not cand.exists():
                    return cand
            else:
                cand.parent.mkdir(parents=True, exist_ok=True)
                try:
                    cand.mkdir()
                    return cand
                except FileExistsError:
                    pass
            n += 1
    except (FileExistsError, NotADirectoryError) as e:  # a file where a folder should be: name it
        raise ValueError(f"cannot create the run folder {path}: {e.filename} is a file, not a folder "
                         "(--project/--name)") from None
    except OSError as e:  # read-only file system, no permission, ...
        raise ValueError(f"cannot create the run folder {path}: {e.strerror.lower()} ({e.filename}); choose "
                         "another --project") from None


class RunLock:
    """``<run dir>/.lock`` holding this process's id while a run writes there; a second run is refused.

    A lock whose process is gone (killed run) is taken over. Use as a context manager or ``acquire``/``release``.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.file = Path(run_dir) / ".lock"
        self.held = False

    def acquire(self) -> RunLock:
        """Take the lock.

        Raises:
            ValueError: another live process holds it (names the folder and its pid).
        """
        for _ in range(2):
            try:
                fd = os.open(self.file, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                pid = self._owner()
                starting = pid is None and time.time() - self._mtime() < 5  # created, its pid not written yet
                if starting or (pid is not None and pid != os.getpid() and _alive(pid)):
                    raise ValueError(f"{self.file.parent} is in use by another run (process {pid or '?'}); wait for it "
                                     "to finish, or give another --name") from None
                self.file.unlink(missing_ok=True)  # left by a run that was killed
                continue
            with os.fdopen(fd, "w") as f:
                f.write(str(os.getpid()))
            self.held = True
            return self
        raise ValueError(f"{self.file.parent}: could not take {self.file} (another run keeps re-creating it)")

    def release(self) -> None:
        """Remove the lock if this process holds it."""
        if self.held:
            self.file.unlink(missing_ok=True)
            self.held = False

    def _owner(self) -> int | None:
        try:
            return int(self.file.read_text().strip() or "x")
        except (OSError, ValueError):
            return None

    def _mtime(self) -> float:
        try:
            return self.file.stat().st_mtime
        except OSError:
            return 0.0

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True
