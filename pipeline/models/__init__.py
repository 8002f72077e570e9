"""Models: loading saved classifiers, truncation, batched inference, the predictors, baselines, and word attributions."""
