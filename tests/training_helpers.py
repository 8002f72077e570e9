"""Helpers shared by the training, evaluation and registry tests: a tiny BERT and a filled store."""

from __future__ import annotations

from pathlib import Path

from pipeline.config import TrainConfig
from pipeline.demo_data import load_demo_data
from pipeline.modeling import default_base_model, load_tokenizer


def make_tiny_bert(out_dir: Path) -> str:
    """A randomly initialised 2-layer BERT (hidden 32) with the packaged tokenizer, saved to ``out_dir``."""
    from transformers import BertConfig, BertForSequenceClassification

    tokenizer = load_tokenizer(default_base_model())
    config = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=128, num_labels=3,
    )
    BertForSequenceClassification(config).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return str(out_dir)


def fill_store(db: Path, rows: int = 200, seed: int = 3) -> None:
    """Synthetic reviews with star labels and frozen splits (80/10/10)."""
    load_demo_data(db, rows=rows, seed=seed)


def tiny_config(base: str, **overrides) -> TrainConfig:
    """A config that trains the tiny model in about a second."""
    values = dict(base_model=base, epochs=2, batch_size=8, max_length=32, learning_rate=5e-4,
                  early_stopping_patience=0, eval_batch_size=32, device="cpu", precision="fp32")
    values.update(overrides)
    return TrainConfig(**values)
