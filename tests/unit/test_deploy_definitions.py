"""What deploy/ ships: the RabbitMQ definitions declare exactly what the code declares (a
difference would make a service's start fail with PRECONDITION_FAILED on the cluster); MongoDB
runs with access control, the services as a user with readWrite on their database only; no
secret is in the repository (deploy/.env.example names them all).

No Docker engine runs here: these read the files (``docker compose config`` was run by hand,
see deploy/README.md).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Any
from urllib.parse import parse_qs

from ruamel.yaml import YAML

from services.common.settings import StoreSettings
from tests.conftest import ROOT


def test_deploy_definitions_match_the_topology_module() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "deploy" / "check_definitions.py")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("OK:")


# -- deploy/compose.yaml: MongoDB with access control, no secret in the repository ------------------

DEPLOY = ROOT / "deploy"
REQUIRED = re.compile(r"\$\{([A-Z0-9_]+):\?[^}]*\}")


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = YAML(typ="safe").load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    return loaded


def env_example() -> dict[str, str]:
    lines = (DEPLOY / ".env.example").read_text(encoding="utf-8").splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_mongodb_members_authenticate_by_keyfile_and_mongo_1_makes_the_root_user() -> None:
    services = compose()["services"]
    for name in ("mongo-1", "mongo-2", "mongo-3"):
        member = services[name]
        command = member["command"]
        assert command[command.index("--keyFile") + 1] == "/etc/mongo-auth/keyfile", name
        assert member["secrets"] == ["mongo_keyfile"]
        script = member["entrypoint"][2]
        assert "install -m 400 -o mongodb -g mongodb /run/secrets/mongo_keyfile /etc/mongo-auth/keyfile" in script
        assert member["entrypoint"][4:] == [] and "exec docker-entrypoint.sh" in script
    assert services["mongo-1"]["environment"] == {
        "MONGO_INITDB_ROOT_USERNAME": "${MONGO_ROOT_USERNAME:-root}",
        "MONGO_INITDB_ROOT_PASSWORD": "${MONGO_ROOT_PASSWORD:?set MONGO_ROOT_PASSWORD in deploy/.env}"}
    # rs.initiate refuses members that hold data: only mongo-1 makes a user before it
    assert "environment" not in services["mongo-2"] and "environment" not in services["mongo-3"]
    assert compose()["secrets"]["mongo_keyfile"] == {"environment": "MONGO_REPLICA_SET_KEY"}


def test_the_services_reach_mongodb_as_their_own_user_in_production() -> None:
    services = compose()["services"]
    for name in ("router", "notifier", "evaluation", "console"):
        environment = services[name]["environment"]
        assert environment["MONGODB_URL"].startswith(
            "mongodb://zeroerrand:${ZEROERRAND_MONGO_PASSWORD:?set ZEROERRAND_MONGO_PASSWORD in deploy/.env}"
            "@mongo-1,mongo-2,mongo-3/?")
        assert parse_qs(environment["MONGODB_URL"].rsplit("?", 1)[1]) == {"replicaSet": ["rs0"], "authSource": ["admin"]}
        assert environment["ZEROERRAND_ENVIRONMENT"] == "production"
    assert services["notifier"]["environment"]["ZEROERRAND_NOTIFIER_WEBHOOK_SECRET"].startswith(
        "${ZEROERRAND_NOTIFIER_WEBHOOK_SECRET:?")


def test_mongo_init_gives_the_services_user_readwrite_on_their_database_only() -> None:
    definition = compose()
    init = definition["services"]["mongo-init"]
    assert init["configs"] == [{"source": "mongo_init", "target": "/etc/zeroerrand/mongo-init.js"}]
    assert definition["configs"]["mongo_init"] == {"file": "./mongo/init.js"}
    assert init["command"][-1] == "/etc/zeroerrand/mongo-init.js"
    assert set(init["environment"]) == {"MONGO_ROOT_USERNAME", "MONGO_ROOT_PASSWORD", "ZEROERRAND_MONGO_PASSWORD"}
    script = (DEPLOY / "mongo" / "init.js").read_text(encoding="utf-8")
    assert re.search(r'const appDatabase = "([a-z]+)";', script)[1] == StoreSettings().database  # type: ignore[index]
    assert 'const appUser = "zeroerrand";' in script
    assert 'const appRoles = [{ role: "readWrite", db: appDatabase }];' in script
    # the only roles it grants: no grantRolesToUser, no other role names
    assert re.findall(r'role: "(\w+)"', script) == ["readWrite"] and "grantRolesToUser" not in script
    assert "admin.createUser({ user: appUser, pwd: appPassword, roles: appRoles })" in script
    assert "admin.updateUser(appUser, { pwd: appPassword, roles: appRoles })" in script
    assert "process.env.ZEROERRAND_MONGO_PASSWORD" in script and "process.env.MONGO_ROOT_PASSWORD" in script


def test_no_secret_is_committed_and_env_example_names_every_one() -> None:
    text = (DEPLOY / "compose.yaml").read_text(encoding="utf-8")
    required = set(REQUIRED.findall(text))
    secrets_from_env = {s["environment"] for s in compose()["secrets"].values()}
    example = env_example()
    assert required | secrets_from_env <= set(example), "missing from .env.example: " + str(
        (required | secrets_from_env) - set(example))
    assert {k for k, v in example.items() if v} == set(), "values in .env.example"
    assert {"MONGO_ROOT_PASSWORD", "ZEROERRAND_MONGO_PASSWORD", "MONGO_REPLICA_SET_KEY"} <= set(example)
    # every password, secret or key given to a container comes from deploy/.env
    for name, service in compose()["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if re.search(r"PASSWORD|SECRET|COOKIE|_KEY$", key):
                assert REQUIRED.fullmatch(str(value)), f"{name}: {key} is not taken from deploy/.env"
    assert ".env" in (DEPLOY / ".gitignore").read_text(encoding="utf-8").split()


# -- RabbitMQ: one user per service and per unit's own system ---------------------------------------

def test_each_service_reaches_rabbitmq_as_its_own_user_and_trusts_only_the_publishers_of_events() -> None:
    services = compose()["services"]
    for name in ("router", "notifier", "evaluation", "console"):
        environment = services[name]["environment"]
        variable = f"ZEROERRAND_AMQP_PASSWORD_{name.upper()}"
        assert environment["ZEROERRAND_AMQP_URL"] == (
            f"amqp://zeroerrand-{name}:${{{variable}:?set {variable} in deploy/.env}}@haproxy:5672/zeroerrand")
        assert json.loads(environment["ZEROERRAND_TRUSTED_PUBLISHERS"]) == ["zeroerrand-router", "zeroerrand-evaluation"]
    systems = json.loads(services["evaluation"]["environment"]["ZEROERRAND_EVALUATION_UNIT_SYSTEMS"])
    units = YAML(typ="safe").load((ROOT / "rules" / "units.yaml").read_text(encoding="utf-8"))["units"]
    assert systems == {f"zeroerrand-unit.{u['code']}": u["code"] for u in units}


def test_the_users_job_runs_the_generated_grants_with_passwords_from_env() -> None:
    definition = compose()
    job = definition["services"]["rabbitmq-users"]
    assert job["env_file"] == [".env"]
    assert {"source": "rabbitmq_users", "target": "/etc/zeroerrand/rabbitmq-users.sh"} in job["configs"]
    assert definition["configs"]["rabbitmq_users"] == {"file": "./rabbitmq/users.sh"}
    script = job["entrypoint"][2]
    assert "source /etc/zeroerrand/rabbitmq-users.sh" in script and "'.*' '.*' '.*'" not in script.replace(
        "ctl set_permissions -p zeroerrand admin '.*' '.*' '.*'", "")
    users = (DEPLOY / "rabbitmq" / "users.sh").read_text(encoding="utf-8")
    done = subprocess.run(["bash", "-n", str(DEPLOY / "rabbitmq" / "users.sh")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    variables = set(re.findall(r'"\$\{([A-Z0-9_]+):\?', users))
    assert variables and variables <= set(env_example()), variables - set(env_example())
    assert ".*" not in re.sub(r"ctl 'set_topic_permissions' .*", "", users), "no service or unit gets everything"


# -- every service in compose.yaml: its own user, its metrics port, a healthcheck, Prometheus ------
# (`docker compose` is not installed here, so the file is read as YAML; merge keys are resolved)

APP_SERVICES = {"router": 9101, "notifier": 9102, "evaluation": 9103, "console": 9104}


def test_every_service_runs_as_its_own_rabbitmq_user_and_none_as_guest() -> None:
    services = compose()["services"]
    users = set()
    for name in APP_SERVICES:
        environment = services[name]["environment"]
        variable = f"ZEROERRAND_AMQP_PASSWORD_{name.upper()}"
        assert environment["ZEROERRAND_AMQP_URL"] == (
            f"amqp://zeroerrand-{name}:${{{variable}:?set {variable} in deploy/.env}}@haproxy:5672/zeroerrand")
        assert environment["ZEROERRAND_ENVIRONMENT"] == "production"  # where guest is refused
        users.add(environment["ZEROERRAND_AMQP_URL"].split("//")[1].split(":")[0])
    assert len(users) == len(APP_SERVICES)
    assert "guest" not in json.dumps(compose()), "no value in compose.yaml names guest"
    assert {c for c in services if services[c].get("command", [None])[0] in APP_SERVICES} == set(APP_SERVICES)


def test_every_service_serves_metrics_and_health_on_its_port_and_is_healthchecked_there() -> None:
    services = compose()["services"]
    for name, port in APP_SERVICES.items():
        service = services[name]
        assert service["environment"]["ZEROERRAND_METRICS_PORT"] == str(port), name
        assert service["environment"]["ZEROERRAND_METRICS_HOST"] == "0.0.0.0", name
        check = service["healthcheck"]
        # the image (python:3.12-slim) has python, not curl
        assert check["test"][:3] == ["CMD", "python", "-c"], name
        assert f"urlopen('http://127.0.0.1:{port}/health', timeout=4)" in check["test"][3], name
        assert {"interval", "timeout", "retries", "start_period"} <= check.keys(), name
        compile(check["test"][3], name, "exec")
        assert "ports" not in service, f"{name}: the metrics endpoint has no authentication, publish nothing"
    assert "curl" not in (DEPLOY / "Dockerfile").read_text(encoding="utf-8")


def test_prometheus_scrapes_every_replica_of_every_service() -> None:
    definition = compose()
    prometheus = definition["services"]["prometheus"]
    assert {"source": "prometheus_yml", "target": "/etc/prometheus/prometheus.yml"} in prometheus["configs"]
    assert definition["configs"]["prometheus_yml"] == {"file": "./prometheus.yml"}
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    assert prometheus["ports"][0].startswith("${PROMETHEUS_BIND:-127.0.0.1}:")
    assert "healthcheck" in prometheus
    scrape = YAML(typ="safe").load((DEPLOY / "prometheus.yml").read_text(encoding="utf-8"))["scrape_configs"]
    jobs = {job["job_name"]: job for job in scrape}
    for name, port in APP_SERVICES.items():
        assert jobs[f"zeroerrand-{name}"]["dns_sd_configs"] == [
            {"names": [name], "type": "A", "port": port, "refresh_interval": "30s"}]


def test_the_console_runs_behind_haproxy_with_the_notifiers_key_and_address() -> None:
    services = compose()["services"]
    console, notifier = services["console"]["environment"], services["notifier"]["environment"]
    for key in ("ZEROERRAND_CONSOLE_SECRET_KEY", "ZEROERRAND_CONSOLE_PUBLIC_URL"):
        assert console[key] == notifier[key] and REQUIRED.fullmatch(console[key]), key
    assert console["MONGODB_URL"] == notifier["MONGODB_URL"]
    assert console["ZEROERRAND_CONSOLE_HOST"] == "0.0.0.0" and console["ZEROERRAND_CONSOLE_PORT"] == "8080"
    assert services["console"]["command"] == ["console"]
    assert services["console"]["depends_on"]["mongo-init"] == {"condition": "service_completed_successfully"}
    assert "${ZEROERRAND_CONSOLE_HTTP_PORT:-8080}:8080" in services["haproxy"]["ports"]
    haproxy = (DEPLOY / "haproxy.cfg").read_text(encoding="utf-8")
    assert "server-template console 8 console:8080 check port 9104" in haproxy
    assert "option httpchk GET /health" in haproxy
    # the console believes X-Forwarded-For: haproxy must replace what the client sent
    assert "http-request set-header X-Forwarded-For %[src]" in haproxy


def test_the_wheel_carries_the_consoles_pages() -> None:
    """deploy/Dockerfile installs a wheel: every file of services/ that is not Python must be package data."""
    import fnmatch
    import tomllib

    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["package-data"]
    files = subprocess.run(["git", "ls-files", "services"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    for path in (f for f in files if not f.endswith(".py")):
        package, covered = path.rsplit("/", 1)[0], False
        for name, patterns in data.items():
            base = name.replace(".", "/") + "/"
            covered |= path.startswith(base) and any(fnmatch.fnmatch(path[len(base):], p) for p in patterns)
        assert covered, f"{path} ({package}) is not in [tool.setuptools.package-data]"
