"""Evaluation: predictions + ground truth -> metrics, plots, reports. Trains nothing."""
