"""Models: loading, truncation, inference, predictors, baselines and word attributions."""
