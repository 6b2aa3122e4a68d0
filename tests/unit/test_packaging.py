"""What can be checked of the deployment files without Docker: compose.yaml, Dockerfile, .dockerignore, DEPLOY.md."""

from __future__ import annotations

import importlib
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from billing.settings import BillingSettings
from clickmint.cli import COMMANDS
from kernel.env import Env
from kernel.settings import Settings
from tracker.settings import TrackerSettings

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("clickmint", "kernel", "tracker", "billing", "portal")
# Env("X") methods read CLICKMINT_X; anything else names the variable in full.
ENV_READ = re.compile(r"""\benv\.(?:raw|str|int|bool|port|url|choice)\(\s*["']([A-Z][A-Z0-9_]*)["']""")
FULL_NAME = re.compile(r"\bCLICKMINT_[A-Z][A-Z0-9_]*\b")
INTERPOLATION = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?::?[-?][^}]*)?\}")
ONE_SHOT = "service_completed_successfully"


def _known_variables() -> set[str]:
    """Every CLICKMINT_* variable the code reads (Env readers and names spelled out in full)."""
    names: set[str] = set()
    for package in SOURCES:
        for path in (ROOT / package).rglob("*.py"):
            text = path.read_text()
            names.update("CLICKMINT_" + name for name in ENV_READ.findall(text))
            names.update(FULL_NAME.findall(text))
    return names


def _compose() -> dict[str, Any]:
    text = (ROOT / "compose.yaml").read_text()
    try:
        import yaml
    except ImportError:  # PyYAML is not a dependency: fall back to reading the layout by indentation
        return _compose_by_indentation(text)
    loaded: dict[str, Any] = yaml.safe_load(text)
    return loaded


def _compose_by_indentation(text: str) -> dict[str, Any]:
    """Service names and their top-level keys only (anchors merged by name): enough for the structural checks."""
    blocks: dict[str, dict[str, Any]] = {}
    anchors: dict[str, dict[str, Any]] = {}
    section = current = None
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        indent = len(line) - len(line.lstrip())
        key, _, rest = line.strip().partition(":")
        if indent == 0:
            section = key
            current = {}
            if section == "services":
                continue
            if "&" in rest:
                anchors[rest.split("&", 1)[1].strip()] = current
        elif indent == 2 and section == "services":
            current = blocks.setdefault(key, {})
        elif indent == 2 and current is not None and section != "services":
            current[key] = rest.strip() or True
        elif indent == 4 and section == "services" and current is not None:
            if key == "<<":
                current.update(anchors.get(rest.strip().lstrip("*"), {}))
            else:
                current[key] = rest.strip() or True
    return {"services": blocks}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _compose()


def _dockerfile_final_stage() -> list[str]:
    lines = (ROOT / "Dockerfile").read_text().replace("\\\n", " ").splitlines()
    instructions = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    last_from = max(i for i, line in enumerate(instructions) if line.upper().startswith("FROM "))
    return instructions[last_from:]


def test_compose_parses_with_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"valkey", "postgres", "migrate", "tracker", "ingest", "portal"} <= set(services)


def test_every_service_has_a_healthcheck(compose: dict[str, Any]) -> None:
    services = compose["services"]
    waited_for_completion = {
        name
        for service in services.values()
        if isinstance(service.get("depends_on"), dict)
        for name, rule in service["depends_on"].items()
        if isinstance(rule, dict) and rule.get("condition") == ONE_SHOT
    }
    for name, service in services.items():
        check = service.get("healthcheck")
        assert check, f"service {name} has no healthcheck"
        if isinstance(check, dict) and check.get("disable"):
            # Only a one-shot job may go without: the others wait for it to finish, not to be healthy.
            assert name in waited_for_completion, f"{name} disables its healthcheck but is no one-shot job"
            assert service.get("restart") == "no", f"one-shot {name} must not be restarted"
        elif isinstance(check, dict):
            assert check.get("test"), f"service {name}: healthcheck without a test"


def test_dependencies_wait_for_health_or_completion(compose: dict[str, Any]) -> None:
    services = compose["services"]
    if not isinstance(services["tracker"].get("depends_on"), dict):
        pytest.skip("needs PyYAML to read depends_on")
    for name, service in services.items():
        for dependency, rule in (service.get("depends_on") or {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            assert rule["condition"] in ("service_healthy", ONE_SHOT), f"{name} -> {dependency}"
            if rule["condition"] == "service_healthy":
                assert not services[dependency]["healthcheck"].get("disable"), f"{dependency} cannot become healthy"
    for part in ("tracker", "ingest", "portal"):
        assert services[part]["depends_on"]["migrate"]["condition"] == ONE_SHOT
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_valkey_keeps_events(compose: dict[str, Any]) -> None:
    command = compose["services"]["valkey"]["command"]
    words = command if isinstance(command, list) else command.replace('"', " ").replace(",", " ").split()
    text = " ".join(words)
    assert "--appendonly yes" in text
    assert "--appendfsync everysec" in text or "--appendfsync always" in text
    assert "--maxmemory-policy noeviction" in text  # the tracker refuses an evicting Redis


def test_clickmint_services_run_real_commands(compose: dict[str, Any]) -> None:
    services = compose["services"]
    if not isinstance(services["tracker"].get("command"), list):
        pytest.skip("needs PyYAML to read commands")
    assert services["migrate"]["command"] == ["migrate"] and "migrate" in COMMANDS
    assert services["ingest"]["command"] == ["ingest"] and "ingest" in COMMANDS
    for name, factory, port in (("tracker", "tracker.app:create_app", 8000), ("portal", "portal.app:create_app", 8001)):
        service = services[name]
        assert service["entrypoint"] == ["python", "-m", "uvicorn"]
        command = service["command"]
        assert command[0] == factory and "--factory" in command
        assert f"--port={port}" in command
        # X-Forwarded-* must only be believed when CLICKMINT_TRUST_FORWARDED says so, as under `clickmint up`.
        assert "--no-proxy-headers" in command
        module, attribute = factory.split(":")
        assert callable(getattr(importlib.import_module(module), attribute))
        assert str(port) in " ".join(service["healthcheck"]["test"])


def test_compose_environment_passes_the_settings_checks(compose: dict[str, Any], tmp_path: Path) -> None:
    """The variables compose gives Clickmint, with placeholders for the secrets, are accepted by every part."""
    environment = compose["services"]["tracker"].get("environment")
    if not isinstance(environment, dict):
        pytest.skip("needs PyYAML to read the environment")
    placeholders = {"CLICKMINT_SECRET_KEY": "k" * 48, "POSTGRES_PASSWORD": "0123abcd"}
    values = {
        name: INTERPOLATION.sub(lambda m: placeholders[m.group(1)], str(value)) for name, value in environment.items()
    }
    values["CLICKMINT_DATA_DIR"] = str(tmp_path)
    env = Env(values)
    core = Settings.from_env(env)
    assert core.mode == "production"
    assert core.redis_url == "redis://valkey:6379/0"
    assert core.database_url == "postgresql://clickmint:0123abcd@postgres:5432/clickmint"
    TrackerSettings.from_env(env, core=core)
    BillingSettings.from_env(env, core=core)


def test_dockerfile_final_stage_is_slim_and_unprivileged() -> None:
    stage = _dockerfile_final_stage()
    assert stage[0].split()[1].startswith("python:3.11-slim")
    users = [line.split()[1] for line in stage if line.upper().startswith("USER ")]
    assert users, "the final stage sets no USER: it would run as root"
    assert users[-1].split(":")[0] not in ("root", "0")
    joined = "\n".join(stage)
    for compiler in ("build-essential", "gcc", "g++", "clang", "python3-dev"):
        assert compiler not in joined, f"{compiler} in the runtime image"
    assert any(line.upper().startswith("HEALTHCHECK ") for line in stage)
    assert any(line.split()[:3] == ["EXPOSE", "8000", "8001"] for line in stage)
    assert 'ENTRYPOINT ["clickmint"]' in stage


def test_dockerfile_copies_every_package() -> None:
    """A new top-level package must reach the image too."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {pattern.rstrip("*") for pattern in patterns}
    copied = {line.split()[1] for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("COPY ")}
    assert packages <= copied, f"not copied into the build stage: {packages - copied}"
    assert "pyproject.toml" in copied


# Files a package reads at run time: every one must be in the wheel's package data (a page, catalogue or font
# left out works from a checkout and breaks once installed).
RUNTIME_FILES = {
    "portal": ("templates", "static", "locale"),
    "billing": ("locale", "fonts"),
    "schemas": ("migrations", "events", "offers"),
}


def test_package_data_ships_every_runtime_file() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]
    missing = []
    for package, folders in RUNTIME_FILES.items():
        base = ROOT / package
        shipped = {path for pattern in globs.get(package, ()) for path in base.glob(pattern)}
        for folder in folders:
            for path in (base / folder).rglob("*"):
                if path.is_file() and path.suffix not in (".pot", ".py", ".pyc") and path not in shipped:
                    missing.append(str(path.relative_to(ROOT)))
    assert not missing, f"not in [tool.setuptools.package-data]: {missing}"


def test_dockerignore_keeps_secrets_and_state_out() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if not line.startswith("#")}
    assert {".git", ".env", ".venv", ".clickmint"} <= ignored
    assert not ignored & {"clickmint", "tracker", "billing", "portal", "schemas", "pyproject.toml", "README.md"}


@pytest.mark.parametrize(
    "document",
    ["compose.yaml", "docs/DEPLOY.md", "docs/VISITORS.md", "docs/configuration.md", "docs/operations.md", "Dockerfile"],
)
def test_every_named_setting_exists(document: str) -> None:
    named = set(FULL_NAME.findall((ROOT / document).read_text()))
    assert named, f"{document} names no CLICKMINT_* setting"
    unknown = named - _known_variables()
    assert not unknown, f"{document} names settings the code never reads: {sorted(unknown)}"


# Read by the code but not for operators: fault injection in tests, and the embedded PostgreSQL's run-as user.
INTERNAL_SETTINGS = {"CLICKMINT_FAULT_CRASH_AFTER_COMMIT", "CLICKMINT_PG_RUN_AS"}


def test_every_setting_the_code_reads_is_in_the_readme() -> None:
    """Users learn the settings from the configuration page the README sends them to: a new CLICKMINT_*
    variable must be documented there."""
    assert "(docs/configuration.md)" in (ROOT / "README.md").read_text()
    documented = (ROOT / "docs" / "configuration.md").read_text()
    missing = sorted(v for v in _known_variables() - INTERNAL_SETTINGS if v not in documented)
    assert not missing, f"docs/configuration.md does not document: {missing}"
