"""Evaluation: metrics (metrics.py) and the AVC evaluation behind `avlearn eval avc` (avc.py)."""
