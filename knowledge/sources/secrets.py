"""Credentials of source kinds: named in the source's keys (`token_env = "CONFLUENCE_TOKEN"`),
read from the environment or the `TEAMBOT_SECRETS_FILE` (KEY=VALUE lines), never from
teambot.toml, which is usually committed or shared.

`SecretOptions` is the base of every kind's options model that takes a credential: a key that
looks like a secret itself (`token = "…"`, `password = "…"`) is refused with the way to name
it instead.
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel, model_validator

from knowledge.errors import SourceError

__all__ = ["SECRETS_FILE", "SecretOptions", "secret"]

SECRETS_FILE = "TEAMBOT_SECRETS_FILE"
ENV_NAME = r"^([A-Za-z_][A-Za-z0-9_]{0,127})?$"
_SECRET_KEYS = {"token", "password", "api_token", "api_key", "secret", "pat", "ssh_key", "key"}


def secret(name: str) -> str:
    """The value of the secret `name` from the environment, else from the secrets file; ""
    when neither has it."""
    if not name:
        return ""
    value = os.environ.get(name, "")
    if value:
        return value
    path = os.environ.get(SECRETS_FILE, "")
    if not path:
        return ""
    from dotenv import dotenv_values

    try:
        return dotenv_values(path).get(name) or ""
    except OSError as exc:
        raise SourceError(f"{SECRETS_FILE} names {path}, which cannot be read: {exc}") from exc


def required(name: str, key: str, where: str) -> str:
    """`secret(name)`, or `SourceError` saying where to put it."""
    value = secret(name)
    if not value:
        raise SourceError(
            f"secret {name} is not set (named by {key}): {where}; put it in the environment "
            f"of teambot or as {name}=… in the file named by {SECRETS_FILE} "
            f"/ 未设置密钥 {name}：请写入环境变量或 {SECRETS_FILE} 指向的文件"
        )
    return value


class SecretOptions(BaseModel):
    """A kind's keys: unknown keys are refused, and a secret written in place is refused with
    the way to name it."""

    model_config = {"extra": "forbid"}

    @model_validator(mode="before")
    @classmethod
    def _no_secrets_in_place(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in data:
                if str(key).lower() in _SECRET_KEYS:
                    raise ValueError(
                        f"{key} is a secret and must not be in the config file: put it in the "
                        f"environment or the {SECRETS_FILE} under a name of your choice and set "
                        f'token_env = "THAT_NAME" (ssh_key_env for a git SSH key) / 密钥不能写在配置'
                        f"文件里：请放入环境变量，并用 token_env 指明变量名"
                    )
        return data
