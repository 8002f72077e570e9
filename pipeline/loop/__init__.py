"""The relabel-retrain loop: scoring, flagging, relabeling, rounds and the champion registry."""
