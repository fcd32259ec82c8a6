"""Signing in and out of the console, changing one's password, and /console itself."""

from __future__ import annotations

import hmac
import logging
import re
import secrets
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from bot.console.accounts import AccountError
from bot.console.auth import COOKIE, LOGIN_COOKIE
from bot.console.deps import (
    PREFIX,
    AccountsDep,
    Agent,
    Available,
    Console,
    ConsoleDep,
    Posted,
    back,
    form,
)

log = logging.getLogger(__name__)

router = APIRouter(prefix=PREFIX)

LOGIN_FORM_SECONDS = 12 * 3600
_LOGIN_TOKEN = re.compile(r"^[A-Za-z0-9_-]{32}$")


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request, console: Available) -> Response:
    return _login_form(
        request,
        console,
        next=request.query_params.get("next", PREFIX),
        error="",
        notice=request.query_params.get("notice", ""),
    )


def _login_form(request: Request, console: Console, status: int = 200, **values: Any) -> Response:
    """The sign-in page with its CSRF token: the same random value in a SameSite=Strict cookie
    and in the form (kept while the browser has one, so several tabs work), so a login form
    posted from another site cannot sign the browser in to the sender's account."""
    token = request.cookies.get(LOGIN_COOKIE, "")
    if not _LOGIN_TOKEN.match(token):
        token = secrets.token_urlsafe(24)
    page = console.render("login.html", status=status, csrf=token, **values)
    page.set_cookie(
        LOGIN_COOKIE,
        token,
        max_age=LOGIN_FORM_SECONDS,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path=PREFIX,
    )
    return page


@router.post("/login")
async def login(request: Request, console: Available) -> Response:
    fields = await form(request)
    name = fields.get("name", "").strip()[:64]
    target = fields.get("next", "") or PREFIX
    if not target.startswith(PREFIX) or target.startswith("//"):
        target = PREFIX  # never redirect off the console
    cookie, given = request.cookies.get(LOGIN_COOKIE, ""), fields.get("csrf", "")
    if not (cookie and hmac.compare_digest(cookie.encode(), given.encode())):
        error = "登录表单已过期，请重新登录。 / The sign-in form expired or came from elsewhere: sign in again."
        return _login_form(request, console, status=403, next=target, error=error, notice="")
    result = await console.gate.login(request, name, fields.get("password", ""))
    if result.lockout is not None:
        lock = result.lockout
        who = "所有登录 / all logins" if lock.everyone else "此地址 / this address"
        error = (
            f"登录失败次数过多，{who}已锁定，请 {lock.minutes} 分钟后再试。 / "
            f"Too many failed logins: locked for {lock.minutes} min."
        )
        refused = _login_form(
            request, console, status=429, next=target, error=error, notice="", locked=True
        )
        refused.headers["Retry-After"] = str(int(lock.seconds) + 1)
        return refused
    if result.agent is None:
        error = "名字或密码不对 / Wrong name or password"
        return _login_form(request, console, status=401, next=target, error=error, notice="")
    response = RedirectResponse(target, status_code=303)
    response.delete_cookie(LOGIN_COOKIE, path=PREFIX)
    response.set_cookie(
        COOKIE,
        result.token,
        max_age=int(console.settings.session_hours * 3600),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path=PREFIX,
    )
    return response


@router.post("/logout")
async def logout(post: Posted, accounts: AccountsDep) -> Response:
    await accounts.end(post.who)  # the cookie stops working everywhere, not just here
    response = back("/login", notice="已退出 / Signed out")
    response.delete_cookie(COOKIE, path=PREFIX)
    return response


@router.get("/password")
async def password_page(request: Request, who: Agent, console: ConsoleDep) -> Response:
    return console.render("password.html", **console.common(request, who, "password"))


@router.post("/password")
async def change_password(post: Posted, accounts: AccountsDep) -> Response:
    who, fields = post.who, post.fields
    if await accounts.verify(who.agent, fields.get("current", "")) is None:
        return back("/password", error="当前密码不对 / The current password is wrong")
    if fields.get("new", "") != fields.get("again", ""):
        return back("/password", error="两次输入不一致 / The two new passwords differ")
    try:
        ended = await accounts.set_password(who.agent, fields.get("new", ""))
    except AccountError as error:
        return back("/password", error=str(error))
    log.info("console: %s changed their password; %d session(s) ended", who.agent, ended)
    response = back("/login", notice="密码已更改，请重新登录 / Password changed: sign in again")
    response.delete_cookie(COOKIE, path=PREFIX)
    return response


@router.get("")
async def home() -> Response:
    return RedirectResponse(f"{PREFIX}/escalations", status_code=303)
