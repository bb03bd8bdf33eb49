"""Shared fixtures: deterministic seeds and the real VOC data of ../shared (through RSSD_TEST_DATA)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hypothesis import settings

settings.register_profile("rssd", deadline=None, max_examples=40, derandomize=True)
settings.load_profile("rssd")


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def test_data() -> Path:
    """``$RSSD_TEST_DATA`` (``../shared/data`` in CI): real VOC2007 test annotations and 9 photos."""
    root = os.environ.get("RSSD_TEST_DATA")
    if not root:
        pytest.skip("RSSD_TEST_DATA is not set (CI points it at ../shared/data)")
    path = Path(root)
    if not (path / "voc2007-test" / "VOCdevkit").is_dir():
        pytest.fail(f"RSSD_TEST_DATA={root} does not hold voc2007-test/VOCdevkit")
    return path
