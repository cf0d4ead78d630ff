"""The OpenVINO tests (tests/test_export_openvino.py), run by a pytest of their own: see ``collect_ignore`` in
tests/conftest.py for why they stay out of the suite's process (named on the command line, the file still runs:
``python -m pytest tests/test_export_openvino.py``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import OPENVINO_CHILD

TESTS = Path(__file__).resolve().parent


@pytest.mark.slow
def test_openvino_export_and_backend_in_their_own_process(datasets_dir: Path, weights_dir: Path) -> None:
    env = dict(os.environ, **{OPENVINO_CHILD: "1"})
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
                          str(TESTS / "test_export_openvino.py")], cwd=TESTS.parent, env=env, capture_output=True,
                         text=True, timeout=1200)
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-2000:]
    assert " passed" in res.stdout and "skipped" not in res.stdout, res.stdout[-2000:]
