"""Download PASCAL VOC: official archives, MD5 checksums, resumable transfers, safe extraction.

``rssd download voc2007 [--root ~/data]`` fetches ``VOCtrainval_06-Nov-2007.tar`` and ``VOCtest_06-Nov-2007.tar``
(``voc2012``: ``VOCtrainval_11-May-2012.tar``), verifies each archive's MD5, and extracts them so that
``ROOT/VOCdevkit/VOC2007`` exists. An interrupted transfer leaves ``<archive>.part``; running again resumes it with
an HTTP range request (or restarts when the server does not honour ranges). Without network access it stops with a
message saying where to put archives fetched by hand; a present archive with the right checksum is never fetched
again. ``data/scripts/VOC2007.sh`` and ``VOC2012.sh`` do the same with curl or wget.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "Archive",
    "VOC_ARCHIVES",
    "DownloadError",
    "ChecksumError",
    "md5sum",
    "download_file",
    "extract_tar",
    "fetch_archive",
    "download_voc",
]


@dataclass(frozen=True)
class Archive:
    """One downloadable file: its name, MD5 and the URLs to try in order."""

    filename: str
    md5: str
    urls: tuple[str, ...]


def _voc(year: str, filename: str, md5: str) -> Archive:
    return Archive(
        filename,
        md5,
        (
            f"http://host.robots.ox.ac.uk/pascal/VOC/voc{year}/{filename}",  # the official host
            f"https://thor.robots.ox.ac.uk/pascal/VOC/voc{year}/{filename}",  # where it redirects today
            f"https://pjreddie.com/media/files/{filename}",  # a long-lived mirror
        ),
    )


#: The official archives of each dataset name (MD5s as published with the datasets and used by torchvision).
VOC_ARCHIVES: dict[str, tuple[Archive, ...]] = {
    "voc2007": (
        _voc("2007", "VOCtrainval_06-Nov-2007.tar", "c52e279531787c972589f7e41ab4ae64"),
        _voc("2007", "VOCtest_06-Nov-2007.tar", "b6e924de25625d8de591ea690078ad9f"),
    ),
    "voc2012": (_voc("2012", "VOCtrainval_11-May-2012.tar", "6cd6e144f989b92b3379bac3b3de84fd"),),
}


class DownloadError(RuntimeError):
    """A file could not be fetched from any of its URLs (the message says what to do by hand)."""


class ChecksumError(DownloadError):
    """A downloaded or present file does not have the expected MD5."""


def md5sum(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex MD5 of a file, read in chunks."""
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk_size), b""):
            h.update(block)
    return h.hexdigest()


def download_file(
    url: str, dest: str | os.PathLike, md5: str | None = None, *, progress: bool = True, timeout: float = 30.0
) -> Path:
    """Fetch ``url`` to ``dest`` through ``dest + ".part"``, resuming a partial file; verify ``md5`` when given.

    Returns:
        ``dest``.

    Raises:
        urllib.error.URLError, OSError: network failures (the caller decides whether to try another URL).
        ChecksumError: the finished file has the wrong MD5 (the ``.part`` file is deleted so a rerun starts over).
    """
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "rssd-download"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code != 416 or not have:  # 416: nothing left to send, the partial file is complete
            raise
        response = None
    if response is not None:
        with response:
            status = getattr(response, "status", 200)
            mode = "ab" if have and status == 206 else "wb"  # 200 to a range request: the server restarts
            if mode == "wb":
                have = 0
            length = response.headers.get("Content-Length")
            total = have + int(length) if length is not None else None
            bar = None
            if progress:
                from tqdm.auto import tqdm

                bar = tqdm(total=total, initial=have, unit="B", unit_scale=True, desc=dest.name)
            with open(part, mode) as f:
                for block in iter(lambda: response.read(1 << 20), b""):
                    f.write(block)
                    if bar is not None:
                        bar.update(len(block))
            if bar is not None:
                bar.close()
    if md5 is not None:
        got = md5sum(part)
        if got != md5:
            part.unlink()
            raise ChecksumError(f"{dest.name}: MD5 {got} != expected {md5}; removed the download, run again")
    part.replace(dest)
    return dest


def extract_tar(archive: str | os.PathLike, root: str | os.PathLike) -> Path:
    """Extract a tar archive into ``root``, refusing members that would land outside it (absolute paths, ``..``,
    links); returns ``root``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(root, filter="data")
        else:  # pragma: no cover - Python < 3.11.4
            base = root.resolve()
            for m in tar.getmembers():
                target = (root / m.name).resolve()
                if base not in target.parents and target != base or m.issym() or m.islnk():
                    raise DownloadError(f"{archive}: refusing unsafe member {m.name!r}")
            tar.extractall(root)
    return root


def fetch_archive(
    archive: Archive, directory: str | os.PathLike, *, mirror: str | None = None, progress: bool = True
) -> Path:
    """Make sure ``directory/archive.filename`` exists with the right MD5, downloading it when needed.

    Args:
        mirror: a base URL tried first (``mirror + "/" + filename``), e.g. a local copy.

    Raises:
        DownloadError: no URL worked; the message lists why and how to download by hand.
        ChecksumError: the file fetched has the wrong MD5.
    """
    directory = Path(directory).expanduser()
    dest = directory / archive.filename
    if dest.exists():
        if md5sum(dest) == archive.md5:
            return dest
        # a copy with the wrong checksum: probably cut short; resume it like a partial download
        dest.replace(dest.with_name(dest.name + ".part"))
    urls: Sequence[str] = archive.urls
    if mirror:
        urls = (mirror.rstrip("/") + "/" + archive.filename, *archive.urls)
    failures = []
    for url in urls:
        try:
            return download_file(url, dest, archive.md5, progress=progress)
        except ChecksumError:
            raise
        except (TimeoutError, urllib.error.URLError, OSError, ValueError) as e:
            failures.append(f"{url}: {getattr(e, 'reason', e)}")
    raise DownloadError(
        f"could not download {archive.filename} (are you offline?)\n  "
        + "\n  ".join(failures)
        + f"\nDownload it by hand from {archive.urls[0]} into {directory} and run the same command again: "
        f"the MD5 ({archive.md5}) is checked and the archive extracted."
    )


def download_voc(
    name: str,
    root: str | os.PathLike = "~/data",
    *,
    mirror: str | None = None,
    keep_archives: bool = True,
    progress: bool = True,
    archives: Sequence[Archive] | None = None,
) -> Path:
    """Download and extract a VOC dataset (``"voc2007"`` or ``"voc2012"``) under ``root``.

    Args:
        root: archives go here and are extracted here, giving ``root/VOCdevkit/VOC20xx``.
        mirror: base URL tried before the official ones.
        keep_archives: leave the verified ``.tar`` files (so a rerun does not download again).
        archives: override :data:`VOC_ARCHIVES` (tests).

    Returns:
        ``root/VOCdevkit``.
    """
    if archives is None:
        if name not in VOC_ARCHIVES:
            raise ValueError(f"unknown dataset {name!r}; choose from {sorted(VOC_ARCHIVES)}")
        archives = VOC_ARCHIVES[name]
    root = Path(root).expanduser()
    for archive in archives:
        marker = root / "VOCdevkit" / f".extracted-{archive.filename}"
        if marker.exists():
            continue
        path = fetch_archive(archive, root, mirror=mirror, progress=progress)
        if progress:
            print(f"extracting {path} -> {root}")
        extract_tar(path, root)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(archive.md5 + "\n")
        if not keep_archives:
            path.unlink()
    return root / "VOCdevkit"
