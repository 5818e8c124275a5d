"""deploy/Dockerfile builds a small, non-root image that runs the gateway, and
.dockerignore keeps the build context small without starving the wheel build.

Read statically (dockerfile-parse): there is no Docker daemon here, and a
failed image build or a container that cannot start would only show up later,
in someone else's deployment.
"""

from __future__ import annotations

import json
import posixpath
import re
import shlex
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from dockerfile_parse import DockerfileParser

from interlock.api.table import exact_routes

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
SECRET_NAME = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)
LOOPBACK_URL = re.compile(r"http://127\.0\.0\.1:(\d+)(/[\w/.-]*)")

Instruction = dict[str, Any]


@cache
def _parser() -> DockerfileParser:
    return DockerfileParser(path=str(DOCKERFILE))


def _stages() -> list[list[Instruction]]:
    """The instructions, one list per FROM (comments dropped)."""
    stages: list[list[Instruction]] = []
    for item in _parser().structure:
        if item["instruction"] == "FROM":
            stages.append([])
        if stages and item["instruction"] != "COMMENT":
            stages[-1].append(item)
    return stages


def _final(instruction: str) -> list[str]:
    return [i["value"] for i in _stages()[-1] if i["instruction"] == instruction]


def _exec_form(value: str) -> list[str]:
    return json.loads(value) if value.lstrip().startswith("[") else shlex.split(value)


def _declared_names(value: str) -> list[str]:
    """The names an ENV or ARG line declares (``A=1 B=2``, ``A 1`` or ``A``)."""
    parts = shlex.split(value)
    if parts and "=" not in parts[0]:
        return parts[:1]
    return [part.split("=", 1)[0] for part in parts]


def test_multi_stage_from_a_pinned_slim_python() -> None:
    """A build stage makes the wheel; the runtime stage starts clean from a
    pinned python:3.11 slim image (no floating tag, no build tools)."""
    images = [i["value"].split()[0] for s in _stages() for i in s if i["instruction"] == "FROM"]
    assert len(images) >= 2, images
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", images[-1]), images[-1]
    for image in images:
        assert ":" in image and not image.endswith(":latest"), f"{image} is not pinned"


def test_runs_as_a_fixed_non_root_uid() -> None:
    """Numeric, so Kubernetes' runAsNonRoot can check it; never 0."""
    users = _final("USER")
    assert users, "the final stage sets no USER: it would run as root"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0, users[-1]
    assert not gid or (gid.isdigit() and int(gid) != 0), users[-1]


def test_environment_suits_a_read_only_root_filesystem() -> None:
    """No .pyc writes, unbuffered logs, listening beyond loopback, and the
    data directory (the one writable place) declared as a VOLUME."""
    env = _parser().envs
    assert env.get("PYTHONDONTWRITEBYTECODE") == "1"
    assert env.get("PYTHONUNBUFFERED") == "1"
    assert env.get("INTERLOCK_HOST") == "0.0.0.0"
    volumes = [v for value in _final("VOLUME") for v in _exec_form(value)]
    assert env.get("INTERLOCK_DATA_DIR") in volumes, (env, volumes)


def test_exposes_the_port_it_serves_and_probes() -> None:
    """EXPOSE, INTERLOCK_PORT (the CLI's default --port) and the HEALTHCHECK
    agree; the probe needs no curl and asks a route the gateway has."""
    port = _parser().envs.get("INTERLOCK_PORT", "8080")
    exposed = {p.split("/")[0] for value in _final("EXPOSE") for p in value.split()}
    assert exposed == {port}
    (check,) = _final("HEALTHCHECK")
    command = _exec_form(check.split("CMD", 1)[1])
    assert command[0] == "python", f"the slim base has no curl: {command}"
    (url,) = LOOPBACK_URL.findall(check)
    assert url[0] == port, check
    assert "GET" in exact_routes.get(url[1], {}), f"{url[1]} is not a gateway route"
    assert re.search(r"timeout=\d", check), "a probe without a timeout can hang"


def test_runs_interlock_serve() -> None:
    """The entrypoint is the CLI; compose and k8s add --config, or `worker`."""
    assert _exec_form(_final("ENTRYPOINT")[-1]) == ["interlock"]
    assert _exec_form(_final("CMD")[-1])[0] == "serve"


def test_no_secret_in_env_or_args() -> None:
    """ENV and ARG values end up in the image's history for anyone to read."""
    declared = [
        name
        for stage in _stages()
        for item in stage
        if item["instruction"] in ("ENV", "ARG")
        for name in _declared_names(item["value"])
    ]
    assert declared
    assert not [name for name in declared if SECRET_NAME.search(name)], declared


def test_runtime_install_keeps_no_pip_cache() -> None:
    installs = [v for v in _final("RUN") if "pip install" in v]
    assert installs and all("--no-cache-dir" in v for v in installs), installs


# -- the build context ------------------------------------------------------------


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go's filepath.Match, plus ``**``) as a regex."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
        else:
            out += {"*": "[^/]*", "?": "[^/]"}.get(pattern[i], re.escape(pattern[i]))
            i += 1
    return re.compile(out)


@cache
def _ignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            negated = line.startswith("!")
            pattern = posixpath.normpath(line.lstrip("!").strip()).lstrip("/")
            rules.append((negated, _glob_regex(pattern)))
    return rules


def _ignored(path: str) -> bool:
    """Docker's rule: the last pattern matching the path or a parent wins."""
    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for negated, regex in _ignore_rules():
        if any(regex.fullmatch(c) for c in candidates):
            ignored = not negated
    return ignored


def _copied_sources() -> list[str]:
    """Paths COPY'd or ADD'ed from the build context (not ``--from`` a stage)."""
    sources = []
    for stage in _stages():
        for item in stage:
            if item["instruction"] not in ("COPY", "ADD"):
                continue
            args = _exec_form(item["value"])
            if any(a.startswith("--from") for a in args):
                continue
            sources += [a for a in args if not a.startswith("--")][:-1]
    return [posixpath.normpath(s) for s in sources]


def _wheel_inputs() -> list[Path]:
    """What setuptools reads: pyproject.toml, the readme, every module and
    package-data file of the packages under ``packages.find.where``."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    setuptools = project["tool"]["setuptools"]
    inputs = [ROOT / "pyproject.toml", ROOT / project["project"]["readme"]]
    for where in setuptools["packages"]["find"]["where"]:
        inputs += [p for p in (ROOT / where).rglob("*.py") if "__pycache__" not in p.parts]
        for package, globs in setuptools.get("package-data", {}).items():
            for pattern in globs:
                inputs += (ROOT / where / package.replace(".", "/")).glob(pattern)
    return [p for p in inputs if p.is_file() and not _inside_build_output(p)]


def _inside_build_output(path: Path) -> bool:
    rel = path.relative_to(ROOT).parts
    return "build" in rel[:2] or any(part.endswith(".egg-info") for part in rel)


@pytest.mark.parametrize("source", _copied_sources())
def test_copied_paths_exist_and_are_in_the_context(source: str) -> None:
    assert (ROOT / source).exists(), f"COPY {source}: no such path"
    assert not _ignored(source), f"COPY {source}: excluded by .dockerignore"


def test_context_holds_what_the_wheel_needs() -> None:
    """Every file the wheel is built from is COPY'd and not ignored: a missing
    README.md or an over-eager pattern (say ``*.yaml``) would break the build
    or ship a package without its bundled config."""
    copied = _copied_sources()
    for path in _wheel_inputs():
        rel = path.relative_to(ROOT).as_posix()
        assert any(rel == s or rel.startswith(f"{s}/") for s in copied), f"{rel} not COPY'd"
        assert not _ignored(rel), f"{rel} is excluded by .dockerignore"


@pytest.mark.parametrize("heavy", [".venv", ".git", "bench/.work", "tests", "docs/images"])
def test_context_leaves_out_the_heavy_parts(heavy: str) -> None:
    assert _ignored(heavy) and _ignored(f"{heavy}/some/file"), heavy
