"""Shared fixtures. Each fake speaks its real protocol over real HTTP on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.sglang import FakeSGLang


@pytest.fixture
def fake_sglang() -> Iterator[FakeSGLang]:
    """A fresh fake SGLang (reasoning="separate") in a background thread; `.behave(...)` to vary."""
    with FakeSGLang() as fake:
        yield fake
