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
