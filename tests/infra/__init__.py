"""Offline checks of infra/, docker/, azure.yaml and azure-pipelines.yml (no Azure needed)."""
