"""tastebud's pipeline: import, splits, training, evaluation, scoring, flagging, jobs and the CLI."""

import os

# tastebud runs where there is no internet: model ids resolve from the local Hugging Face
# cache or a path, and nothing waits on a hub download. Set HF_HUB_OFFLINE=0 to allow one.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
# Torch's OpenMP threads sleep instead of spinning while they wait: on a small shared machine
# spinning threads fight each other and training/scoring ran 3-5x slower (bench/RESULTS.md).
# Must be set before torch is imported; an explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
