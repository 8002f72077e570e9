"""A tiny randomly initialised BERT classifier saved like a tastebud model, for fast tests."""

from __future__ import annotations

from pathlib import Path

import torch
from pipeline.models.loading import ID2LABEL, LABEL2ID, default_base_model, load_tokenizer, save_classifier


def save_tiny_classifier(out_dir: Path, *, seed: int = 0) -> Path:
    """Save a 2-layer, 32-wide BERT with a 3-class head and the packaged tokenizer into ``out_dir``."""
    from transformers import BertConfig, BertForSequenceClassification


    torch.manual_seed(seed)
    tokenizer = load_tokenizer(default_base_model())
    config = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=128, num_labels=3, id2label=ID2LABEL, label2id=LABEL2ID,
    )
    model = BertForSequenceClassification(config).eval()
    return save_classifier(model, tokenizer, out_dir, {"max_length": 64, "note": "tiny random test model"})
