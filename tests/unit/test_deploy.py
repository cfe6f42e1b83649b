"""No Docker engine runs here: check docker-compose.yml and deploy/ statically against what the code reads."""

from pathlib import Path

import yaml

from streams.config import ENV_OVERRIDES, load_settings

ROOT = Path(__file__).resolve().parents[2]
CODE_ENV = set(ENV_OVERRIDES) | {"WEAVE_CONFIG"}


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def example_key_envs() -> set[str]:
    s = load_settings(ROOT / "deploy" / "weave-router.yaml", env={})
    return {p.api_key_env for p in s.providers if p.api_key_env}


def test_compose_has_the_production_stack() -> None:
    services = compose()["services"]
    assert {"kafka", "clickhouse", "gateway", "worker"} <= set(services)
    assert "KRaft" in (ROOT / "docker-compose.yml").read_text() or "KAFKA_PROCESS_ROLES" in services["kafka"]["environment"]
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    for name in ("gateway", "worker"):
        svc = services[name]
        assert (ROOT / svc["build"]["context"] / svc["build"]["dockerfile"]).is_file()
        assert svc["command"][:2] == ["weave-router", "gateway" if name == "gateway" else "worker"]


def test_compose_env_matches_what_the_code_reads() -> None:
    services = compose()["services"]
    keys = example_key_envs()
    for name in ("gateway", "worker"):
        env = services[name]["environment"]
        missing = (CODE_ENV | keys) - set(env)
        assert not missing, f"{name} lacks {missing}"
        unknown = set(env) - CODE_ENV - keys
        assert not unknown, f"{name} sets env vars nothing reads: {unknown}"
        assert env["KAFKA_BOOTSTRAP_SERVERS"].split(":")[0] in services
        assert env["CLICKHOUSE_URL"].startswith("http://") and "@clickhouse:8123" in env["CLICKHOUSE_URL"]
        mounted = [v.split(":")[0] for v in services[name]["volumes"] if str(v).startswith("./")]
        for src in mounted:
            assert (ROOT / src).exists(), src


def test_gateway_port_is_published_on_loopback_and_matches_config() -> None:
    gw = compose()["services"]["gateway"]
    port = gw["environment"]["WEAVE_PORT"]
    assert f"127.0.0.1:{port}:{port}" in gw["ports"]


def test_k8s_manifests_parse_and_reference_secrets() -> None:
    docs = []
    for path in sorted((ROOT / "deploy" / "k8s").glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert ("Deployment", "weave-router-gateway") in kinds
    assert ("Deployment", "weave-router-worker") in kinds
    assert ("Service", "weave-router") in kinds
    assert ("HorizontalPodAutoscaler", "weave-router-gateway") in kinds
    assert ("ConfigMap", "weave-router-config") in kinds
    cm = next(d for d in docs if d["kind"] == "ConfigMap")
    config = yaml.safe_load(cm["data"]["weave-router.yaml"])
    assert config["providers"]
    for d in docs:
        if d["kind"] != "Deployment":
            continue
        container = d["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e for e in container["env"]}
        assert set(env) >= CODE_ENV, set(CODE_ENV) - set(env)
        for key in example_key_envs() | {"CLICKHOUSE_URL"}:
            assert "secretKeyRef" in env[key]["valueFrom"], f"{key} must come from a Secret"
            assert "value" not in env[key]


def test_dockerfile_installs_the_built_wheel() -> None:
    text = (ROOT / "deploy" / "Dockerfile").read_text()
    assert "pip wheel" in text and "/dist/*.whl" in text
    assert "install -e" not in text and "install --no-cache-dir -e" not in text
    # Schemas and migrations travel inside the package, so the image needs no copies of its own.
    assert "COPY schemas" not in text and "deploy/clickhouse" not in text
