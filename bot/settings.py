"""Settings: teambot.toml, overridden by TEAMBOT_<SECTION>__<KEY> environment variables.

Secrets (API keys, tokens, signing secrets) come only from the environment or from a secrets
file (`TEAMBOT_SECRETS_FILE`, KEY=VALUE lines in the same TEAMBOT_… names), never from the
TOML file, which is usually committed or shared.
"""

from __future__ import annotations

import logging
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from adapters.dingtalk.config import DingTalkSettings
from adapters.feishu.config import FeishuSettings
from adapters.slack.config import SlackSettings
from adapters.web.config import WebChatSettings
from bot.console.config import ConsoleSettings
from engine.config import (
    AttachmentSettings,
    ConversationSettings,
    LLMSettings,
    PolicySettings,
    StorageSettings,
)
from engine.escalation import EscalationSettings
from engine.web.config import WebSettings
from knowledge.config import KnowledgeSettings
from knowledge.files.config import FileSettings

log = logging.getLogger(__name__)

ENV_PREFIX = "TEAMBOT_"
DEFAULT_CONFIG = Path("teambot.toml")
# Keys nothing reads any more, which existing config files (or environments) may still set:
# accepted and ignored with a warning, so that an upgrade does not refuse to start.
RETIRED = {
    ("conversation", "update_interval"): "streamed edits are paced by each platform's own "
    "update_interval ([slack], [feishu], [dingtalk]) alone",
}


class ConfigError(Exception):
    """A configuration problem the operator can fix; the message says how."""


class ServerSettings(BaseModel):
    """`[server]`: the HTTP server (health, web chat; webhooks and console later)."""

    model_config = {"extra": "forbid"}

    host: str = Field(default="127.0.0.1", description="0.0.0.0 to listen on every interface")
    port: int = Field(default=8080, ge=1, le=65535)
    max_body_bytes: int = Field(
        default=1_048_576, ge=1024, le=104_857_600, description="larger requests get 413"
    )
    web_chat: bool = Field(default=True, description="serve the built-in web chat page at /")
    migrate_on_start: bool = Field(default=True, description="apply database migrations at start")
    recovery_window_minutes: float = Field(
        default=60,
        ge=0,
        le=10_080,
        description="apologise for questions this recent that a crash left unanswered",
    )
    recovery_sweep_seconds: float = Field(
        default=30,
        gt=0,
        le=3600,
        description="how often one replica looks for questions a crash or stop left unanswered",
    )
    recovery_deadline_seconds: float = Field(
        default=0,
        ge=0,
        le=86_400,
        description="a question without a final message this long is apologised for "
        "(0: the model's total_timeout + 60 s)",
    )


class LogSettings(BaseModel):
    """`[log]`."""

    model_config = {"extra": "forbid"}

    level: str = Field(default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")
    format: Literal["text", "json"] = Field(default="text", description="json: one object a line")
    redact: bool = Field(
        default=True, description="mask phone numbers, ID numbers, emails, tokens and secrets"
    )


class Settings(BaseSettings):
    """The whole configuration; each component receives only its own section."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        nested_model_default_partial_update=True,
    )

    server: ServerSettings = ServerSettings()
    storage: StorageSettings = StorageSettings()
    files: FileSettings = FileSettings()
    llm: LLMSettings = LLMSettings()
    conversation: ConversationSettings = ConversationSettings()
    attachments: AttachmentSettings = AttachmentSettings()
    policy: PolicySettings = PolicySettings()
    escalation: EscalationSettings = EscalationSettings()
    console: ConsoleSettings = ConsoleSettings()
    web: WebSettings = WebSettings()
    webchat: WebChatSettings = WebChatSettings()
    knowledge: KnowledgeSettings = KnowledgeSettings()
    slack: SlackSettings = SlackSettings()
    feishu: FeishuSettings = FeishuSettings()
    dingtalk: DingTalkSettings = DingTalkSettings()
    log: LogSettings = LogSettings()

    @model_validator(mode="before")
    @classmethod
    def _drop_retired(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        for (section, key), why in RETIRED.items():
            values = data.get(section)
            if isinstance(values, dict) and key in values:
                log.warning("[%s] %s is no longer used and is ignored: %s", section, key, why)
                data = {**data, section: {k: v for k, v in values.items() if k != key}}
        return data

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        secrets_file = os.environ.get(f"{ENV_PREFIX}SECRETS_FILE")
        if secrets_file:
            sources.append(DotEnvSettingsSource(settings_cls, env_file=secrets_file))
        config = _config_path_from_env()
        if config is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config))
        return tuple(sources)


_CONFIG_OVERRIDE: Path | None = None


def _config_path_from_env() -> Path | None:
    if _CONFIG_OVERRIDE is not None:
        return _CONFIG_OVERRIDE
    named = os.environ.get(f"{ENV_PREFIX}CONFIG")
    if named:
        return Path(named)
    return DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None


def _secret_paths(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths: list[tuple[str, ...]] = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            paths.extend(_secret_paths(annotation, (*prefix, name)))
        elif "SecretStr" in str(annotation) or annotation is SecretStr:
            paths.append((*prefix, name))
    return paths


def _check_no_secrets_in_file(path: Path) -> None:
    with path.open("rb") as handle:
        data: dict[str, Any] = tomllib.load(handle)
    for secret in _secret_paths(Settings):
        node: Any = data
        for part in secret:
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            section, key = ".".join(secret[:-1]), secret[-1]
            env = ENV_PREFIX + "__".join(s.upper() for s in secret)
            raise ConfigError(
                f"{path}: [{section}] {key} is a secret and must not be in the config file. "
                f"Remove it and set {env} in the environment or in the file named by "
                f"{ENV_PREFIX}SECRETS_FILE."
            )


def load_settings(config: Path | None = None) -> Settings:
    """Read the settings; a wrong value raises ConfigError naming the key, value and what is allowed."""
    global _CONFIG_OVERRIDE
    if config is not None and not config.exists():
        raise ConfigError(
            f"config file {config} does not exist: create one with `teambot init {config}`"
        )
    _CONFIG_OVERRIDE = config
    try:
        path = _config_path_from_env()
        if path is not None:
            if not path.exists():
                raise ConfigError(
                    f"{ENV_PREFIX}CONFIG names {path}, which does not exist: "
                    f"create it with `teambot init {path}`"
                )
            try:
                _check_no_secrets_in_file(path)
            except tomllib.TOMLDecodeError as error:
                raise ConfigError(f"{path} is not valid TOML: {error}") from error
        return Settings()
    except ValidationError as error:
        raise ConfigError(_explain(error, path)) from error
    finally:
        _CONFIG_OVERRIDE = None


def _explain(error: ValidationError, path: Path | None) -> str:
    lines = ["invalid configuration:"]
    for problem in error.errors():
        location = [str(part) for part in problem["loc"]]
        key = ".".join(location)
        env = ENV_PREFIX + "__".join(part.upper() for part in location)
        where = f"[{'.'.join(location[:-1])}] {location[-1]}" if len(location) > 1 else key
        value = problem.get("input")
        shown = "(missing)" if problem["type"] == "missing" else repr(value)
        if problem["type"] == "extra_forbidden":
            lines.append(
                f"  {where}: unknown key (check the spelling; `teambot init` lists every key)"
            )
            continue
        lines.append(
            f"  {where} = {shown}: {problem['msg']} (set in {path or 'defaults'} or with {env})"
        )
    return "\n".join(lines)


def secret_values(settings: BaseModel) -> list[str]:
    """Every secret value in the settings, so logs can mask them wherever they appear."""
    values: list[str] = []
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            values.append(value.get_secret_value())
        elif isinstance(value, BaseModel):
            values.extend(secret_values(value))
    return values


def config_files(config: Path | None = None) -> list[Path]:
    """The files `load_settings(config)` reads besides the environment, in the order given."""
    global _CONFIG_OVERRIDE
    _CONFIG_OVERRIDE = config
    try:
        toml = _config_path_from_env()
    finally:
        _CONFIG_OVERRIDE = None
    read = [toml.resolve()] if toml is not None and toml.exists() else []
    secrets_file = os.environ.get(f"{ENV_PREFIX}SECRETS_FILE")
    if secrets_file:
        read.append(Path(secrets_file).resolve())
    return read


# Where each platform's credentials come from, for the "enabled but not set" message.
_CREDENTIALS_HELP = {
    "slack": "api.slack.com/apps → your app (created from deploy/slack/manifest.yaml)",
    "feishu": "the Feishu/Lark developer console (凭证与基础信息 / 事件与回调 → 加密策略)",
    "dingtalk": "the DingTalk developer console (开发者后台 → 凭证与基础信息)",
}


def missing_credentials(settings: Settings) -> dict[str, str]:
    """platform -> how to fix it, for every enabled platform whose credentials are not set.

    One message shape for all platforms, shown by `teambot doctor` and by `teambot serve`
    (which refuses to start rather than fail later inside an SDK).
    """
    missing: dict[str, list[str]] = {
        "slack": _missing_slack(settings.slack) if settings.slack.enabled else [],
        "feishu": _missing_feishu(settings.feishu) if settings.feishu.enabled else [],
        "dingtalk": _missing_dingtalk(settings.dingtalk) if settings.dingtalk.enabled else [],
    }
    return {
        platform: (
            f"{platform} is enabled but {', '.join(names)} {'is' if len(names) == 1 else 'are'} "
            f"not set. Find {'it' if len(names) == 1 else 'them'} in {_CREDENTIALS_HELP[platform]}; "
            f"secrets ({ENV_PREFIX}…) go in the environment or the {ENV_PREFIX}SECRETS_FILE "
            f"(deploy/teambot.env.example lists them). Or turn {platform} off: "
            f"[{platform}] enabled = false ({ENV_PREFIX}{platform.upper()}__ENABLED=false)"
        )
        for platform, names in missing.items()
        if names
    }


def _unset(secret: SecretStr | None) -> bool:
    return secret is None or not secret.get_secret_value()


def _missing_slack(slack: SlackSettings) -> list[str]:
    names = ["TEAMBOT_SLACK__BOT_TOKEN (xoxb-…)"] if _unset(slack.bot_token) else []
    socket = slack.mode == "socket" or (slack.mode == "auto" and not _unset(slack.app_token))
    if socket and _unset(slack.app_token):
        names.append("TEAMBOT_SLACK__APP_TOKEN (xapp-…, Socket Mode)")
    if not socket and _unset(slack.signing_secret):
        names.append(
            "TEAMBOT_SLACK__SIGNING_SECRET (HTTP events; or set TEAMBOT_SLACK__APP_TOKEN for "
            "Socket Mode)"
        )
    return names


def _missing_feishu(feishu: FeishuSettings) -> list[str]:
    names = ["[feishu] app_id (cli_…)"] if not feishu.app_id else []
    if _unset(feishu.app_secret):
        names.append("TEAMBOT_FEISHU__APP_SECRET")
    if feishu.mode == "webhook" and _unset(feishu.verification_token):
        names.append("TEAMBOT_FEISHU__VERIFICATION_TOKEN (webhook mode)")
    return names


def _missing_dingtalk(dingtalk: DingTalkSettings) -> list[str]:
    names = ["[dingtalk] client_id (AppKey)"] if not dingtalk.client_id else []
    if _unset(dingtalk.client_secret):
        names.append("TEAMBOT_DINGTALK__CLIENT_SECRET")
    return names
