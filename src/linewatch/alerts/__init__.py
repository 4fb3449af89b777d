"""Alerts: lifecycle and deduplication, the SQL store, and publishers."""
