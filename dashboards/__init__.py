"""Grafana dashboards as code (``dashboards/generate.py``) and their provisioning files."""
