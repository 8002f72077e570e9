"""tastebud's pipeline: import, splits, training, evaluation, scoring, flagging, jobs and the CLI."""
