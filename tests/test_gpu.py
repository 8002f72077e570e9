"""The CUDA path: scoring, overlapped store scoring and fine-tuning on a GPU (skipped without CUDA)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.device import device_defaults, resolve_device
from pipeline.loop.scoring import score_with
from pipeline.models.inference import predict_proba
from pipeline.models.predictors import ClassifierPredictor
from pipeline.train.run import train
from store import models as model_store
from store.db import connect
from store.predictions import count_predictions
from tests.conftest import seed_reviews
from tests.test_scoring import _reviews
from tests.tiny_model import save_tiny_classifier
from tests.training_helpers import fill_store, make_tiny_bert, tiny_config

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    return save_tiny_classifier(tmp_path_factory.mktemp("tiny-gpu") / "model")


def test_cuda_is_resolved_with_gpu_sized_defaults():
    info = resolve_device()
    assert info.device == "cuda" and info.autocast_dtype in (torch.bfloat16, torch.float16)
    defaults = device_defaults(info)
    assert defaults.pin_memory and defaults.score_batch_tokens >= 32768 and defaults.score_chunk_size >= 8192


def test_gpu_scoring_matches_cpu_fp32_in_input_order(tiny_model_dir):
    texts = _reviews(300)["text"].tolist()
    gpu = ClassifierPredictor("m", str(tiny_model_dir), device=resolve_device("cuda"))
    assert next(gpu.model.parameters()).device.type == "cuda"
    cpu = ClassifierPredictor("m", str(tiny_model_dir), device=resolve_device("cpu"), cast_weights=False)
    on_gpu = gpu.predict_proba(texts)
    reference = predict_proba(cpu.model, cpu.tokenizer, texts, max_length=cpu.max_length, device=resolve_device("cpu"),
                              autocast=False)
    assert on_gpu.shape == (300, 3) and on_gpu.dtype == np.float32
    np.testing.assert_allclose(on_gpu, reference, atol=2e-2)  # bf16 weights on the GPU
    assert (on_gpu.argmax(1) == reference.argmax(1)).mean() > 0.95


def test_overlapped_scoring_on_gpu_writes_every_review_once(store_path, tiny_model_dir):
    seed_reviews(store_path, _reviews(1000))
    predictor = ClassifierPredictor("m1", str(tiny_model_dir), device=resolve_device("cuda"))
    result = score_with(store_path, predictor, "m1", chunk_size=128)
    assert result["scored"] == 1000 and result["chunk_size"] == 128
    assert score_with(store_path, predictor, "m1")["scored"] == 0
    with connect(store_path, read_only=True) as con:
        assert count_predictions(con, "m1") == 1000


def test_fine_tuning_on_cuda_registers_a_model(store_path, tmp_path):
    fill_store(store_path, rows=200)
    base = make_tiny_bert(tmp_path / "tiny-base")
    model_id = train(store_path, tiny_config(base, device="cuda", precision="auto", epochs=1))
    with connect(store_path, read_only=True) as con:
        model = model_store.get_model(con, model_id)
    assert model["device"] == torch.cuda.get_device_name(0)
    assert model["params"]["throughput"]["examples"] > 0
