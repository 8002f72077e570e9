"""Models: loading saved classifiers, truncation, batched inference, the predictors, and baselines."""
