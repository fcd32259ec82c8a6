"""A DingTalk knowledge base as a source against the fake OpenAPI: walked with nextToken
paging as the operator, online documents kept with their headings, cited with the alidocs link,
rate limits waited out, an operator who may not open it named with the fix."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from adapters.dingtalk.config import DingTalkSettings
from adapters.dingtalk.documents import dingtalk_kinds, parse_workspace
from knowledge import Embedder, KnowledgeBase, SourceSettings, builtin_kinds
from tests.fakes.dingtalk import FakeDingTalk
from tests.fakes.dingtalk_wiki import OPERATOR
from tests.helpers import kb_settings


@pytest.fixture
async def fake() -> AsyncIterator[FakeDingTalk]:
    async with FakeDingTalk() as server:
        yield server


@pytest.fixture
async def kb(
    fake: FakeDingTalk, embedder: Embedder, tmp_path: Path
) -> AsyncIterator[KnowledgeBase]:
    kinds = builtin_kinds()
    settings = DingTalkSettings(
        client_id=fake.client_id,
        client_secret=SecretStr(fake.client_secret),
        openapi_endpoint=fake.base_url,
    )
    for kind in dingtalk_kinds(settings):
        kinds.register(kind)
    base = await KnowledgeBase.open(
        kb_settings(tmp_path / "chroma"), embedder=embedder, kinds=kinds
    )
    yield base
    await base.close()


def source(operator: str = OPERATOR) -> SourceSettings:
    location = parse_workspace("https://alidocs.dingtalk.com/i/spaces/ws-handbook/overview")
    return SourceSettings(name="dt", kind="dingtalk_wiki", location=location, operator=operator)


async def test_a_knowledge_base_is_walked_cited_and_refreshed_by_modified_time(
    fake: FakeDingTalk, kb: KnowledgeBase
) -> None:
    wikis = fake.wikis
    root = wikis.workspace("ws-handbook")
    folder = wikis.doc(root, "IT", "", kind="FOLDER", extension="")
    printer = wikis.doc(folder.node_id, "打印机", "# 打印机\n## 三楼\n三楼的打印机叫做红隼。")
    wikis.doc(folder.node_id, "VPN", "# VPN\nThe VPN gateway is vpn.acme.example.")
    wikis.doc(root, "Leave", "# Leave\n## Days\nAnnual leave is 15 days.")
    wikis.doc(root, "budget.xlsx", "", extension="xlsx")
    await kb.add_source(source())
    first = await kb.refresh("dt")
    assert first.added == 3 and len(first.failed) == 1, first
    assert "only online documents" in next(iter(first.failed.values()))
    [top] = await kb.retriever.retrieve("三楼的打印机叫什么？", k=1)
    assert top.location == f"https://alidocs.dingtalk.com/i/nodes/{printer.node_id}"
    assert top.section.endswith("三楼")

    blocks = [c for c in fake.calls if c.path.endswith("/blocks")]
    printer.blocks[-1]["paragraph"]["text"] = "三楼的打印机现在叫做鱼鹰。"
    printer.modified = "2026-12-05T09:00:00Z"
    again = await kb.refresh("dt")
    assert (again.changed, again.unchanged) == (1, 2), again
    read = [c for c in fake.calls if c.path.endswith("/blocks")][len(blocks) :]
    assert [c.path.split("/")[5] for c in read] == [printer.node_id]


async def test_rate_limits_are_waited_out_and_a_stranger_operator_is_named(
    fake: FakeDingTalk, kb: KnowledgeBase
) -> None:
    root = fake.wikis.workspace("ws-handbook")
    fake.wikis.doc(root, "Leave", "# Leave\nAnnual leave is 15 days.")
    fake.wikis.throttle = 2
    await kb.add_source(source())
    assert (await kb.refresh("dt")).added == 1
    await kb.add_source(source("union_stranger").model_copy(update={"name": "dt2"}))
    refused = await kb.refresh("dt2")
    assert refused.result == "failed" and "member of the knowledge base" in refused.error
