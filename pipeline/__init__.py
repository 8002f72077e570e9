"""tastebud's pipeline: import, splits, training, evaluation, scoring, flagging, jobs and the CLI."""

import os

# tastebud runs where there is no internet: model ids resolve from the local Hugging Face
# cache or a path, and nothing waits on a hub download. Set HF_HUB_OFFLINE=0 to allow one.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
