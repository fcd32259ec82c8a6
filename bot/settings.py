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
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, create_model, model_validator
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from adapters.platform import Platform
from bot.console.config import ConsoleSettings
from bot.platforms import PLATFORMS
from engine.config import (
    AttachmentSettings,
    ConversationSettings,
    LLMSettings,
    PolicySettings,
    StorageSettings,
)
from engine.threads.escalation import EscalationSettings
from engine.weblookup.config import WebSettings
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
    heartbeat_seconds: float = Field(
        default=5, gt=0, le=60, description="how often each replica writes its heartbeat row"
    )
    heartbeat_lapse_seconds: float = Field(
        default=20,
        gt=0,
        le=3600,
        description="a replica whose heartbeat stood still this long is counted dead; another "
        "takes over its unfinished answers and tells their askers (at least twice the beat)",
    )

    @model_validator(mode="after")
    def _lapse_spans_beats(self) -> ServerSettings:
        if self.heartbeat_lapse_seconds < 2 * self.heartbeat_seconds:
            raise ValueError(
                f"[server] heartbeat_lapse_seconds ({self.heartbeat_lapse_seconds}) must be at "
                f"least twice heartbeat_seconds ({self.heartbeat_seconds}), or a replica that "
                "is only slow to beat is counted dead"
            )
        return self


class LogSettings(BaseModel):
    """`[log]`."""

    model_config = {"extra": "forbid"}

    level: str = Field(default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")
    format: Literal["text", "json"] = Field(default="text", description="json: one object a line")
    redact: bool = Field(
        default=True, description="mask phone numbers, ID numbers, emails, tokens and secrets"
    )


class CoreSettings(BaseSettings):
    """The whole configuration but the platforms' sections (`Settings` adds them from the
    registry, bot/platforms.py); each component receives only its own section."""

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
    knowledge: KnowledgeSettings = KnowledgeSettings()
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


def _with_platforms() -> type[CoreSettings]:
    """CoreSettings plus one section per registered platform ([webchat], [slack], …)."""
    sections: dict[str, Any] = {p.section: (p.settings, p.settings()) for p in PLATFORMS}
    return create_model("Settings", __base__=CoreSettings, __module__=__name__, **sections)


if TYPE_CHECKING:  # code outside adapters/ reads a platform's section through its record
    Settings = CoreSettings
else:
    Settings = _with_platforms()


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


def missing_credentials(settings: BaseModel) -> dict[str, str]:
    """platform -> how to fix it, for every enabled platform whose credentials are not set.

    One message shape for all platforms, shown by `teambot doctor` and by `teambot serve`
    (which refuses to start rather than fail later inside an SDK).
    """
    found: dict[str, str] = {}
    for platform in PLATFORMS:
        names = platform.missing(platform.of(settings)) if platform.is_on(settings) else []
        if names:
            found[platform.name] = _credentials_message(platform, names)
    return found


def _credentials_message(platform: Platform[Any], names: list[str]) -> str:
    one = len(names) == 1
    section, key = platform.switch or (platform.section, "enabled")
    return (
        f"{platform.name} is enabled but {', '.join(names)} {'is' if one else 'are'} "
        f"not set. Find {'it' if one else 'them'} in {platform.credentials_from}; "
        f"secrets ({ENV_PREFIX}…) go in the environment or the {ENV_PREFIX}SECRETS_FILE "
        f"(deploy/teambot.env.example lists them). Or turn {platform.name} off: "
        f"[{section}] {key} = false ({ENV_PREFIX}{section.upper()}__{key.upper()}=false)"
    )
