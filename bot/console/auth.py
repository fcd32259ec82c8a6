"""Console login: a signed session cookie and a per-session CSRF token, no server-side state.

The signing key derives from the console password, so changing the password logs everyone out,
and every replica accepts the sessions of the others.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

COOKIE = "teambot_console"


@dataclass(frozen=True, slots=True)
class Session:
    user: str
    expires: float
    nonce: str

    @property
    def expired(self) -> bool:
        return time.time() >= self.expires


class Signer:
    """Issues and checks session cookies and CSRF tokens for one password."""

    def __init__(self, password: str) -> None:
        self._password = password.encode()
        self._key = hashlib.sha256(b"teambot-console-session\0" + self._password).digest()

    def password_ok(self, given: str) -> bool:
        return hmac.compare_digest(given.encode(), self._password)

    def issue(self, user: str, hours: float) -> tuple[str, Session]:
        session = Session(
            user=user, expires=time.time() + hours * 3600, nonce=secrets.token_hex(16)
        )
        payload = json.dumps([session.user, session.expires, session.nonce]).encode()
        body = base64.urlsafe_b64encode(payload).decode().rstrip("=")
        return f"{body}.{self._sign(body)}", session

    def read(self, cookie: str | None) -> Session | None:
        """The session in a cookie value; None when missing, forged or expired."""
        if not cookie or "." not in cookie:
            return None
        body, signature = cookie.rsplit(".", 1)
        if not hmac.compare_digest(signature, self._sign(body)):
            return None
        try:
            user, expires, nonce = json.loads(
                base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            )
            session = Session(str(user), float(expires), str(nonce))
        except (ValueError, TypeError):
            return None
        return None if session.expired else session

    def csrf(self, session: Session) -> str:
        return self._sign(f"csrf:{session.nonce}")

    def csrf_ok(self, session: Session, token: str) -> bool:
        return hmac.compare_digest(token.encode(), self.csrf(session).encode())

    def _sign(self, text: str) -> str:
        digest = hmac.new(self._key, text.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")
