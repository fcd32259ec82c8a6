"""Fixtures shared by the contract tests (real SDKs against local fakes over real HTTP)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.fakes.slack import FakeSlack


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    """The fake Slack Web API and Socket Mode server, in the test's own loop."""
    async with FakeSlack() as fake:
        yield fake
