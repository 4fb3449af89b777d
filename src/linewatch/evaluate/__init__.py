"""Offline evaluation of anomaly detectors against labelled anomaly windows (NAB scoring)."""
