"""docker-compose.yml and its files, checked without a Docker engine."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_services_of_the_stack():
    services = compose()["services"]
    assert {"kafka", "linewatch", "simulator", "prometheus", "grafana", "postgres"} <= set(services)
    assert services["simulator"]["profiles"] == ["simulator"]
    assert services["linewatch"]["build"] == "." and (ROOT / "Dockerfile").exists()


def test_bind_mounts_exist():
    for name, service in compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which is not in the repository"


def test_prometheus_scrapes_the_linewatch_service_port():
    services = compose()["services"]
    prom = yaml.safe_load((ROOT / "configs/prometheus/prometheus.yml").read_text())
    targets = [t for job in prom["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]]
    port = services["linewatch"]["environment"]["LINEWATCH_HTTP_PORT"]
    assert f"linewatch:{port}" in targets


def test_grafana_provisioning_points_at_the_dashboards():
    provider = yaml.safe_load((ROOT / "configs/grafana/provisioning/dashboards/linewatch.yml").read_text())
    path = provider["providers"][0]["options"]["path"]
    mount = next(v for v in compose()["services"]["grafana"]["volumes"] if "provisioning" in v)
    host, container = mount.split(":")[:2]
    local = ROOT / host / Path(path).relative_to(container)
    assert list(local.glob("*.json")), f"no dashboards in {local}"
    datasource = yaml.safe_load((ROOT / "configs/grafana/provisioning/datasources/prometheus.yml").read_text())
    uid = datasource["datasources"][0]["uid"]
    for dashboard in local.glob("*.json"):
        assert f'"uid": "{uid}"' in dashboard.read_text()


def test_every_long_running_service_has_a_healthcheck_and_restart_policy():
    for name, service in compose()["services"].items():
        if name == "simulator":
            continue
        assert "healthcheck" in service or name == "linewatch" and "HEALTHCHECK" in (ROOT / "Dockerfile").read_text(), name
        assert service.get("restart") == "unless-stopped", name


def test_services_reach_each_other_by_name_and_port():
    services = compose()["services"]
    env = services["linewatch"]["environment"]
    assert env["LINEWATCH_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert "KAFKA_ADVERTISED_LISTENERS" in services["kafka"]["environment"]
    assert "PLAINTEXT://kafka:9092" in services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert "@postgres:5432/" in env["LINEWATCH_DATABASE_URL"]
    assert services["postgres"]["environment"]["POSTGRES_DB"] in env["LINEWATCH_DATABASE_URL"]
    assert services["simulator"]["environment"]["LINEWATCH_KAFKA_BOOTSTRAP"] == "kafka:9092"
    datasource = yaml.safe_load((ROOT / "configs/grafana/provisioning/datasources/prometheus.yml").read_text())
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
    published = {p.split(":")[1] for s in services.values() for p in s.get("ports", [])}
    assert {"8000", "9090", "3000"} <= published
    assert services["linewatch"]["ports"] == [f'{env["LINEWATCH_HTTP_PORT"]}:{env["LINEWATCH_HTTP_PORT"]}']


def test_dockerfile_installs_the_postgres_driver_and_ships_the_configs():
    text = (ROOT / "Dockerfile").read_text()
    assert '.[postgres]' in text and "COPY configs" in text and "COPY src" in text
