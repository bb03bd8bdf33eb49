"""Downloads without internet: a local HTTP server (with or without range support), checksums, resume, offline
messages; the shell scripts' argument handling and checksum check."""

from __future__ import annotations

import hashlib
import http.server
import io
import shutil
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from rssd.cli import main
from rssd.data.download import (
    VOC_ARCHIVES,
    Archive,
    ChecksumError,
    DownloadError,
    download_file,
    download_voc,
    extract_tar,
    fetch_archive,
    md5sum,
)

SCRIPTS = Path(__file__).resolve().parents[1] / "data" / "scripts"


def _tar_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class _Server:
    """Serves ``files`` at ``/name``; honours ``Range: bytes=N-`` when ``ranges`` is True; records requests."""

    def __init__(self, files: dict[str, bytes], ranges: bool = True) -> None:
        self.files, self.ranges, self.requests = files, ranges, []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                data = server.files.get(self.path.lstrip("/"))
                rng = self.headers.get("Range")
                server.requests.append((self.path, rng))
                if data is None:
                    self.send_error(404)
                    return
                start = int(rng.split("=")[1].rstrip("-")) if (rng and server.ranges) else 0
                if start >= len(data) and rng and server.ranges:
                    self.send_response(416)
                    self.end_headers()
                    return
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                self.wfile.write(data[start:])

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def archive_bytes() -> bytes:
    return _tar_bytes(
        {"VOCdevkit/VOC2007/ImageSets/Main/test.txt": b"000001\n", "VOCdevkit/VOC2007/x.txt": b"x" * 5000}
    )


@pytest.fixture
def server(archive_bytes: bytes) -> Iterator[_Server]:
    s = _Server({"VOCtest.tar": archive_bytes})
    yield s
    s.close()


def test_md5sum_hand_computed(tmp_path: Path) -> None:
    p = tmp_path / "f"
    p.write_bytes(b"hello\n")
    assert md5sum(p, chunk_size=2) == "b1946ac92492d2347c6235b4d2611184" == hashlib.md5(b"hello\n").hexdigest()


def test_official_archive_table() -> None:
    assert [a.filename for a in VOC_ARCHIVES["voc2007"]] == ["VOCtrainval_06-Nov-2007.tar", "VOCtest_06-Nov-2007.tar"]
    assert VOC_ARCHIVES["voc2012"][0].md5 == "6cd6e144f989b92b3379bac3b3de84fd"
    for archives in VOC_ARCHIVES.values():
        for a in archives:
            assert a.urls[0].startswith("http://host.robots.ox.ac.uk/pascal/VOC/voc20") and len(a.md5) == 32


def test_download_and_resume(tmp_path: Path, server: _Server, archive_bytes: bytes) -> None:
    md5 = hashlib.md5(archive_bytes).hexdigest()
    dest = tmp_path / "VOCtest.tar"
    (tmp_path / "VOCtest.tar.part").write_bytes(archive_bytes[:1000])  # an interrupted download
    download_file(f"{server.url}/VOCtest.tar", dest, md5, progress=False)
    assert dest.read_bytes() == archive_bytes and not (tmp_path / "VOCtest.tar.part").exists()
    assert server.requests[-1] == ("/VOCtest.tar", "bytes=1000-")
    # a complete .part: the server answers 416 and the file is simply verified
    (tmp_path / "again.tar.part").write_bytes(archive_bytes)
    server.files["again.tar"] = archive_bytes
    download_file(f"{server.url}/again.tar", tmp_path / "again.tar", md5, progress=False)
    assert (tmp_path / "again.tar").read_bytes() == archive_bytes


def test_server_without_ranges_restarts(tmp_path: Path, archive_bytes: bytes) -> None:
    s = _Server({"a.tar": archive_bytes}, ranges=False)
    try:
        (tmp_path / "a.tar.part").write_bytes(b"garbage that must not stay")
        download_file(f"{s.url}/a.tar", tmp_path / "a.tar", hashlib.md5(archive_bytes).hexdigest(), progress=False)
    finally:
        s.close()
    assert (tmp_path / "a.tar").read_bytes() == archive_bytes


def test_checksum_mismatch(tmp_path: Path, server: _Server) -> None:
    with pytest.raises(ChecksumError, match="VOCtest.tar: MD5 .* != expected 0{32}"):
        download_file(f"{server.url}/VOCtest.tar", tmp_path / "VOCtest.tar", "0" * 32, progress=False)
    assert not (tmp_path / "VOCtest.tar").exists() and not (tmp_path / "VOCtest.tar.part").exists()


def test_offline_message(tmp_path: Path) -> None:
    archive = Archive("x.tar", "0" * 32, ("http://127.0.0.1:9/x.tar",))
    with pytest.raises(DownloadError, match=r"(?s)could not download x.tar \(are you offline\?\).*by hand from "):
        fetch_archive(archive, tmp_path, progress=False)


def test_download_voc_extracts_and_skips_present(tmp_path: Path, server: _Server, archive_bytes: bytes) -> None:
    archive = Archive("VOCtest.tar", hashlib.md5(archive_bytes).hexdigest(), (f"{server.url}/VOCtest.tar",))
    root = download_voc("voc2007", tmp_path, archives=[archive], progress=False)
    assert root == tmp_path / "VOCdevkit"
    assert (root / "VOC2007/ImageSets/Main/test.txt").read_text() == "000001\n"
    n = len(server.requests)
    download_voc("voc2007", tmp_path, archives=[archive], progress=False)  # already extracted: no request
    assert len(server.requests) == n
    shutil.rmtree(root)
    download_voc("voc2007", tmp_path, archives=[archive], progress=False)  # archive present and verified
    assert len(server.requests) == n and (root / "VOC2007/x.txt").stat().st_size == 5000


def test_extract_refuses_escaping_members(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tar"
    bad.write_bytes(_tar_bytes({"../evil.txt": b"x"}))
    with pytest.raises((tarfile.TarError, DownloadError)):
        extract_tar(bad, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()


def test_cli_download(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["download", "voc2009"])
    assert "invalid choice" in capsys.readouterr().err
    # offline: the official hosts cannot be resolved here either; a refused mirror is tried first
    rc = main(["download", "voc2012", "--root", str(tmp_path), "--mirror", "http://127.0.0.1:9"])
    assert rc == 1 and "are you offline?" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- shell scripts


def _run(script: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPTS / script), *args], capture_output=True, text=True, timeout=120, env=env)


@pytest.mark.parametrize("script", ["VOC2007.sh", "VOC2012.sh"])
def test_scripts_help_and_bad_argument(script: str) -> None:
    r = _run(script, "--help")
    assert r.returncode == 0 and "--root DIR" in r.stdout and "rssd download voc20" in r.stdout
    r = _run(script, "--frobnicate")
    assert r.returncode == 2 and "unknown argument: --frobnicate" in r.stderr
    r = _run(script, "--root")
    assert r.returncode == 1 and "--root needs a directory" in r.stderr


@pytest.mark.skipif(shutil.which("curl") is None and shutil.which("wget") is None, reason="needs curl or wget")
def test_script_checksum_mismatch_and_offline(tmp_path: Path, server: _Server) -> None:
    import os

    env = {**os.environ, "HOME": str(tmp_path)}
    server.files["VOCtrainval_11-May-2012.tar"] = b"not the real archive"
    r = _run("VOC2012.sh", "--root", str(tmp_path / "r"), "--mirror", server.url, env=env)
    assert r.returncode == 1 and "checksum mismatch" in r.stderr
    assert not any((tmp_path / "r").iterdir())  # the bad download was removed
    # offline: mirror refused, official hosts unreachable (no network here) -> clear message
    r = _run("VOC2012.sh", "--root", str(tmp_path / "r"), "--mirror", "http://127.0.0.1:9", env=env)
    assert (
        r.returncode == 1 and "are you offline?" in r.stderr and "by hand from http://host.robots.ox.ac.uk" in r.stderr
    )
