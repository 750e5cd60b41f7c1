"""Quality of synthetic data: metrics, gates, report."""
