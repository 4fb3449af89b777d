"""Detectors: per-machine anomaly models and the line's failure-rate monitor."""
