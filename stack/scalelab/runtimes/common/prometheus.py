"""Prometheus as every runtime runs it (lab 07): what it scrapes, how often, and the rules file.

local and compose write ``CONFIG`` with their own paths (``local/prometheus.py``: files under the
state dir; ``compose/prometheus.py``: a bind mount); every runtime loads the learner's ``RULES``
file once promtool accepts it (``kubernetes/prometheus.py``: into a ConfigMap; its Prometheus
finds the pods through Kubernetes service discovery instead of a targets file).
"""

SCRAPED = ("users", "orders", "worker")   # services whose members serve /metrics
INTERVAL = "1s"
RULES = "alert_rules.yaml"

CONFIG = """# Written by scalelab (runtimes/common/prometheus.py): lab 07's scrape configuration.
global:
  scrape_interval: {interval}
  scrape_timeout: {interval}
  evaluation_interval: {interval}
rule_files:
  - {rules}/*.yaml
scrape_configs:
  - job_name: shop
    file_sd_configs:
      - files: [{targets}]
        refresh_interval: 5s
"""
