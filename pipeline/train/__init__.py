"""Fine-tuning: the validated config, one training run, and the loop that fits the weights."""
