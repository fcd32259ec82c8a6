"""deploy/Dockerfile built for real with buildah (Debian's OCI builder, no daemon needed).

Runs where buildah is installed and the base image is already in its local storage (pulled
beforehand, or on a machine that reaches Docker Hub); skips with the reason otherwise. On the
development machines neither Docker Hub nor the PyTorch CPU index is reachable, so it skips there
(docs/deploy.md, "The image in CI").
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"


def base_images() -> list[str]:
    text = DOCKERFILE.read_text(encoding="utf-8")
    args = dict(re.findall(r"^ARG (\w+)=(\S+)", text, re.M))
    images = []
    for image in re.findall(r"^FROM (\S+)", text, re.M):
        images.append(re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image))
    return sorted(set(images))


def test_the_image_builds_with_buildah() -> None:
    buildah = shutil.which("buildah")
    if buildah is None:
        pytest.skip("buildah not installed (apt-get install buildah): image not built")
    for image in base_images():
        present = subprocess.run(
            [buildah, "inspect", "--type", "image", image], capture_output=True, check=False
        )
        if present.returncode != 0:
            pytest.skip(
                f"base image {image} is not in buildah's local storage and no registry is "
                f"reachable from here: `buildah pull {image}` on a connected machine first"
            )
    result = subprocess.run(
        [
            buildah,
            "bud",
            "--pull=never",
            "--isolation",
            "chroot",
            "--layers",
            "-f",
            str(DOCKERFILE),
            "-t",
            "localhost/teambot:test",
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    smoke = subprocess.run(
        [buildah, "from", "--pull=never", "localhost/teambot:test"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert smoke.returncode == 0, smoke.stderr
    container = smoke.stdout.strip()
    try:
        help_text = subprocess.run(
            [buildah, "run", container, "--", "teambot", "--help"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert help_text.returncode == 0 and "serve" in help_text.stdout, help_text.stderr
    finally:
        subprocess.run([buildah, "rm", container], capture_output=True, check=False)
