"""`make lab` (the README's first command) starts JupyterLab on notebooks/ and prints the URL to open."""

from __future__ import annotations

import os
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(shutil.which("make") is None or sys.platform == "win32", reason="needs make (POSIX)")
def test_make_lab_serves_the_notebooks_and_prints_the_url() -> None:
    venv = Path(sys.prefix)
    stamp = venv / ".rssd-installed"
    if not stamp.is_file():
        pytest.skip("not running from the Makefile's .venv")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    proc = subprocess.Popen(
        ["make", "lab", f"VENV={venv}", f"LAB_PORT={port}"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    seen: list[str] = []
    url = None
    try:
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + 90
        while url is None and time.monotonic() < deadline and proc.poll() is None:
            if sel.select(timeout=1):
                line = proc.stdout.readline()
                seen.append(line)
                match = re.search(rf"http://127\.0\.0\.1:{port}/lab\?token=\w+", line)
                url = match.group(0) if match else None
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    log = "".join(seen)
    assert url, f"no JupyterLab URL within 90 s; make lab printed:\n{log}"
    command = next(line for line in seen if "jupyter lab" in line)
    assert "--notebook-dir=notebooks" in command and "--no-browser" in command
    assert ("--allow-root" in command) == (os.getuid() == 0)
