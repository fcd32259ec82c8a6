"""The console's Feishu names through lark-oapi against the fake Open API: the group's name
(im/v1/chats) and the asker's name (contact/v3/users, by open_id), each asked once."""

from __future__ import annotations

from adapters.feishu.client import FeishuApi
from adapters.feishu.names import FeishuDirectory
from engine.messages import ThreadKey
from tests.fakes.feishu import FakeFeishu


async def test_names_come_from_feishu_once() -> None:
    with FakeFeishu() as fake:
        api = FeishuApi(fake.app_id, fake.app_secret, fake.url, timeout=5)
        names = FeishuDirectory(api)
        key = ThreadKey("feishu", "tenant", "oc_abc1234", "om_1")
        for _ in range(2):
            assert await names.chat_name(key) == "IT 支持群 1234"
            assert await names.user_name(key, "ou_zhang") == "张三"
        paths = [c.path for c in fake.calls]
        assert paths.count("/open-apis/im/v1/chats/oc_abc1234") == 1
        assert paths.count("/open-apis/contact/v3/users/ou_zhang") == 1
