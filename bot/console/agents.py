"""The console's agents page (admins): the named accounts, adding one, removing one."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import Response

from bot.console.accounts import AccountError, Role
from bot.console.deps import PREFIX, AccountsDep, Admin, AdminPosted, ConsoleDep, back

log = logging.getLogger(__name__)

router = APIRouter(prefix=PREFIX)


@router.get("/agents")
async def agents(
    request: Request, who: Admin, console: ConsoleDep, accounts: AccountsDep
) -> Response:
    return console.render(
        "agents.html", **console.common(request, who, "agents"), agents=await accounts.agents()
    )


@router.post("/agents")
async def add(post: AdminPosted, accounts: AccountsDep) -> Response:
    fields = post.fields
    role = Role.ADMIN if fields.get("role") == "admin" else Role.AGENT
    try:
        added = await accounts.add(fields.get("name", ""), fields.get("password", ""), role)
    except AccountError as error:
        return back("/agents", error=str(error))
    log.info("console: %s added agent %s (%s)", post.who.agent, added.name, added.role.value)
    return back("/agents", notice=f"已添加 / Added: {added.name}")


@router.post("/agents/{name}/remove")
async def remove(name: str, post: AdminPosted, accounts: AccountsDep) -> Response:
    if name == post.who.agent:
        return back("/agents", error="不能删除自己 / You cannot remove yourself")
    try:
        await accounts.remove(name)
    except AccountError as error:
        return back("/agents", error=str(error))
    log.info("console: %s removed agent %s", post.who.agent, name)
    return back("/agents", notice=f"已删除 / Removed: {name}")
