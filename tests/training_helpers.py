"""Helpers shared by the training, evaluation and registry tests: a tiny BERT and a filled store."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from pipeline.train.config import TrainConfig
from pipeline.data.demo_data import load_demo_data
from pipeline.models.loading import default_base_model, load_tokenizer
from pipeline.device import resolve_device


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
    # ensemble=False: these tests are about the fine-tune itself (its run's product is the fine-tuned
    # model); the default recipe's ensemble has its own tests in test_quality.py.
    values = dict(base_model=base, epochs=2, batch_size=8, max_length=32, learning_rate=5e-4,
                  early_stopping_patience=0, eval_batch_size=32, device="cpu", precision="fp32", ensemble=False)
    values.update(overrides)
    return TrainConfig(**values)


# Subprocesses started by the tests (CLI, jobs) run on one CPU thread too.
SUBPROCESS_ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TASTEBUD_CPU_THREADS": "1"}


@pytest.fixture(autouse=True)
def single_thread():
    """Run each test on one CPU thread: tiny models gain nothing from two, and on a busy shared
    machine two threads spin in OpenMP barriers (measured 4-6x slower)."""

    resolve_device()  # settle the cached device first: its first resolution sets the thread count
    resolve_device("cpu")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
