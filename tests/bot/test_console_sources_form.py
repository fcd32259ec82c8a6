"""The console's Sources page adds a source of any registered kind from a pasted link: a link
the kind cannot read is refused with the example to paste, a Feishu wiki link is registered and
indexed in the background (progress polled), and its documents are listed with their status."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from adapters.feishu.config import FeishuSettings
from tests.bot.served import PASSWORD, make_settings, serve
from tests.fakes.feishu import FakeFeishu
from tests.fakes.sglang import FakeSGLang
from tests.helpers import sign_in

SPACE = "7034502641455497244"


@pytest.fixture
def fake() -> Iterator[FakeFeishu]:
    with FakeFeishu() as server:
        yield server


async def test_a_wiki_link_pasted_in_the_form_is_added_indexed_and_listed(
    tmp_path: Path, fake_sglang: FakeSGLang, fake: FakeFeishu, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(tmp_path, fake_sglang, PASSWORD).model_copy(
        update={
            "feishu": FeishuSettings(
                app_id=fake.app_id, app_secret=SecretStr(fake.app_secret), domain=fake.url
            )
        }
    )
    top = fake.docs.page(SPACE, "Printers", "# Printers\n\nThe printer is called Kestrel.\n")
    fake.docs.page(SPACE, "Toner", "# Toner\n\nToner is in room 3.\n", parent=top.node_token)
    async with serve(settings, monkeypatch) as (url, _):
        async with httpx.AsyncClient(base_url=url) as client:
            assert (await sign_in(client, "admin", PASSWORD)).status_code == 303
            page = await client.get("/console/sources")
            assert "飞书知识库 / Feishu wiki" in page.text and 'id="add-source"' in page.text
            csrf = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
            form = {"csrf": csrf, "kind": "feishu_wiki", "name": "wiki"}

            bad = await client.post(
                "/console/sources/add", data={**form, "location": "https://acme.feishu.cn/base/x"}
            )
            assert bad.status_code == 422 and "paste e.g." in bad.text

            link = f"https://acme.feishu.cn/wiki/{top.node_token}?from=copylink"
            added = await client.post("/console/sources/add", data={**form, "location": link})
            assert added.status_code == 303 and "Added%20source%20wiki" in added.headers["location"]
            for _ in range(200):
                run = (await client.get("/console/sources/progress")).json().get("wiki", {})
                if run and not run["running"]:
                    break
                await asyncio.sleep(0.2)
            assert run["result"] == "ok" and "2 added" in run["summary"], run
            listed = await client.get("/console/sources/wiki")
            assert listed.status_code == 200
            assert "Printers" in listed.text and "Toner" in listed.text
