"""Experiments built from the stages: the paper's ablation table."""
