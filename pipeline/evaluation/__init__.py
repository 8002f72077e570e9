"""Evaluation: offline metrics and evaluating a model on a test set."""
