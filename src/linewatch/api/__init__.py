"""The HTTP service: alerts, machine status, metrics and health for displays and dashboards."""
