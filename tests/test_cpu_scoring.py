"""How a CPU scores (issue 22): bf16 where there is AMX, int8 Linear layers where there is AVX2 but no AMX,
fp32 otherwise; decided from the CPU's flags in pipeline/device.py, overridable by environment variables."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

import pipeline.device as device
from pipeline.models.inference import is_int8_quantized, predict_proba, prepare_for_inference, quantize_linear_int8
from pipeline.models.loading import load_classifier
from pipeline.models.predictors import ClassifierPredictor
from store.settings import current_settings
from tests.test_scoring import _reviews
from tests.tiny_model import save_tiny_classifier


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    return save_tiny_classifier(tmp_path_factory.mktemp("tiny-cpu") / "model")


def _clear_device_caches():
    for cached in (device.cpu_has_amx_bf16, device.cpu_has_int8_gemm, device.resolve_device):
        cached.cache_clear()


@pytest.fixture
def cpu_with(monkeypatch):
    """Pretend the CPU has these /proc/cpuinfo flags (and no TASTEBUD_CPU_* overrides); caches cleared around."""
    for name in ("TASTEBUD_CPU_BF16", "TASTEBUD_CPU_INT8", "TASTEBUD_DEVICE"):
        monkeypatch.delenv(name, raising=False)
    _clear_device_caches()

    def pretend(*flags: str):
        monkeypatch.setattr(device, "_cpu_flags", lambda: set(flags))
        _clear_device_caches()
        return device.resolve_device("cpu")

    yield pretend
    monkeypatch.undo()
    _clear_device_caches()


def test_settings_read_the_int8_override():
    assert current_settings({}).cpu_int8 is None
    assert current_settings({"TASTEBUD_CPU_INT8": "0"}).cpu_int8 is False
    assert current_settings({"TASTEBUD_CPU_INT8": "1"}).cpu_int8 is True


@pytest.mark.parametrize("int8_by_default", [False, True])
def test_each_kind_of_cpu_gets_its_own_precision(cpu_with, monkeypatch, int8_by_default):
    monkeypatch.setattr(device, "INT8_BY_DEFAULT", int8_by_default)
    # AMD EPYC / older Intel: AVX2, no AMX -> fp32, or int8 Linear layers where int8 is the default
    epyc = cpu_with("sse4_2", "avx", "avx2", "fma")
    assert device.cpu_has_int8_gemm() and epyc.autocast_dtype is None
    assert epyc.int8_linear == int8_by_default and ("int8" in epyc.name) == int8_by_default
    # Sapphire Rapids: AMX bf16, never int8 (no change on the AMX path)
    spr = cpu_with("avx2", "avx512f", "amx_bf16", "amx_int8", "amx_tile")
    assert spr.autocast_dtype == torch.bfloat16 and not spr.int8_linear
    # no AVX2 (old x86, or flags we cannot read): fp32 whatever the default
    old = cpu_with("sse4_2")
    assert not device.cpu_has_int8_gemm() and old.autocast_dtype is None and not old.int8_linear
    assert device.device_defaults(epyc) == device.device_defaults(old)  # batch sizes do not change with precision


def test_environment_overrides_the_detection(cpu_with, monkeypatch):
    monkeypatch.setattr(device, "INT8_BY_DEFAULT", True)
    monkeypatch.setenv("TASTEBUD_CPU_INT8", "0")
    assert not cpu_with("avx2").int8_linear
    monkeypatch.setattr(device, "INT8_BY_DEFAULT", False)
    monkeypatch.setenv("TASTEBUD_CPU_INT8", "1")
    assert cpu_with("avx2").int8_linear
    assert cpu_with("sse4_2").int8_linear  # asked for explicitly: obeyed
    monkeypatch.setenv("TASTEBUD_CPU_BF16", "1")  # both asked for: bf16
    forced = cpu_with("avx2")
    assert forced.autocast_dtype == torch.bfloat16 and not forced.int8_linear


def test_int8_copy_quantizes_the_encoder_only_and_keeps_the_predictions(tiny_model_dir, cpu_with):
    fp32_cpu = cpu_with("avx2")
    int8_cpu = replace(fp32_cpu, int8_linear=True)
    fp32_model, tokenizer = load_classifier(tiny_model_dir)
    model = prepare_for_inference(load_classifier(tiny_model_dir)[0], int8_cpu)
    assert is_int8_quantized(model) and not is_int8_quantized(fp32_model)
    assert type(model.classifier) is torch.nn.Linear  # the head stays fp32
    assert all(type(m) is not torch.nn.Linear for m in model.bert.encoder.modules())
    texts = _reviews(60, seed=3)["text"].tolist()
    fp32 = predict_proba(fp32_model.eval(), tokenizer, texts, device=fp32_cpu)
    int8 = predict_proba(model, tokenizer, texts, device=int8_cpu)
    assert int8.shape == (60, 3) and int8.dtype == np.float32
    np.testing.assert_allclose(int8.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(int8, fp32, atol=2e-2)
    # cast_weights=False keeps the model fp32 (a reference, or a model we must not change)
    assert not is_int8_quantized(prepare_for_inference(load_classifier(tiny_model_dir)[0], int8_cpu, cast_weights=False))
    # a second prepare does not quantize twice
    assert prepare_for_inference(model, int8_cpu) is model


def test_classifier_predictor_scores_with_int8_where_the_device_says_so(tiny_model_dir, cpu_with):
    texts = _reviews(30, seed=5)["text"].tolist()
    fp32_cpu = cpu_with("avx2")
    int8 = ClassifierPredictor("m", str(tiny_model_dir), device=replace(fp32_cpu, int8_linear=True))
    fp32 = ClassifierPredictor("m", str(tiny_model_dir), device=fp32_cpu)
    assert is_int8_quantized(int8.model) and not is_int8_quantized(fp32.model)
    np.testing.assert_allclose(int8.predict_proba(texts), fp32.predict_proba(texts), atol=2e-2)


def test_quantizing_a_model_without_an_encoder_says_so():
    class Plain(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(4, 3)

    with pytest.raises(ValueError, match="cannot find the encoder layers of Plain"):
        quantize_linear_int8(Plain())


@pytest.fixture
def keep_torch_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)  # resolve_device sets the process's thread count


def test_streams_are_chosen_per_cpu_and_overridable(cpu_with, monkeypatch, keep_torch_threads):
    monkeypatch.delenv("TASTEBUD_CPU_STREAMS", raising=False)
    monkeypatch.setenv("TASTEBUD_CPU_THREADS", "2")
    assert cpu_with("avx2").streams == 2  # no AMX: every core its own forward pass
    assert cpu_with("avx2", "amx_bf16").streams == 1  # AMX: one pass on every core, as measured there
    # fp32 pads each batch to its longest text only; AMX's bf16 kernels are built per shape: multiples of 16
    assert device.device_defaults(cpu_with("avx2")).pad_multiple == 1
    assert device.device_defaults(cpu_with("avx2", "amx_bf16")).pad_multiple == 16
    monkeypatch.setenv("TASTEBUD_CPU_THREADS", "16")
    assert cpu_with("avx2").streams == device.MAX_CPU_STREAMS
    monkeypatch.setenv("TASTEBUD_CPU_STREAMS", "1")
    one = cpu_with("avx2")
    assert one.streams == 1 and "streams" not in one.name
    monkeypatch.setenv("TASTEBUD_CPU_STREAMS", "64")
    assert cpu_with("avx2").streams == 16  # never more streams than threads
    monkeypatch.setenv("TASTEBUD_CPU_STREAMS", "none")
    with pytest.raises(Exception, match="TASTEBUD_CPU_STREAMS must be a whole number of streams"):
        current_settings()


def test_streams_give_the_same_numbers_and_leave_the_thread_count_alone(tiny_model_dir, cpu_with):
    cpu = cpu_with("avx2")
    model, tokenizer = load_classifier(tiny_model_dir)
    model.eval()
    texts = _reviews(90, seed=7)["text"].tolist()
    threads_before = torch.get_num_threads()
    # small batches: many of them, so both streams take several
    one = predict_proba(model, tokenizer, texts, device=replace(cpu, threads=2, streams=1), batch_size=4)
    two = predict_proba(model, tokenizer, texts, device=replace(cpu, threads=2, streams=2), batch_size=4)
    np.testing.assert_array_equal(one, two)  # batch for batch the same computation, in input order
    assert torch.get_num_threads() == threads_before


def test_an_error_in_a_stream_reaches_the_caller(tiny_model_dir, cpu_with):
    cpu = replace(cpu_with("avx2"), threads=2, streams=2)
    model, tokenizer = load_classifier(tiny_model_dir)
    model.eval()
    calls = {"n": 0}
    real_forward = model.forward

    def failing_forward(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("out of memory in batch 3")
        return real_forward(*args, **kwargs)

    model.forward = failing_forward
    with pytest.raises(RuntimeError, match="out of memory in batch 3"):
        predict_proba(model, tokenizer, _reviews(60, seed=2)["text"].tolist(), device=cpu, batch_size=4)
    assert calls["n"] < 10  # the other stream stopped after its current batch instead of running all 15


def test_a_ray_scoring_actor_keeps_to_its_cpu_slot(tiny_model_dir, cpu_with, monkeypatch, keep_torch_threads):
    from pipeline.scale.ray_score import ScoreActor

    monkeypatch.setenv("TASTEBUD_CPU_THREADS", "2")  # what the machine would give; restored after the test
    monkeypatch.delenv("TASTEBUD_CPU_STREAMS", raising=False)
    cpu_with("avx2")
    actor = ScoreActor({"model_id": "tiny", "kind": "finetuned", "path": str(tiny_model_dir)}, None, cpu_threads=1)
    predictor_device = actor.predictor.device
    assert (predictor_device.threads, predictor_device.streams) == (1, 1)  # one slot: one thread, one stream
    assert torch.get_num_threads() == 1
    out = actor(pd.DataFrame({"review_id": ["a", "b"], "text": ["Great tacos.", "Cold fries, slow service."]}))
    assert list(out["review_id"]) == ["a", "b"] and np.allclose(out[["p_negative", "p_neutral", "p_positive"]].sum(axis=1), 1.0)


def test_a_ray_worker_caps_its_threads_and_keeps_a_smaller_setting(cpu_with, monkeypatch, keep_torch_threads):
    monkeypatch.setenv("TASTEBUD_CPU_THREADS", "4")  # restored after the test, as cap_cpu_threads writes it
    assert cpu_with("avx2").threads == 4
    device.cap_cpu_threads(2)  # a worker given 2 CPUs of the node
    assert device.resolve_device("cpu").threads == 2 and torch.get_num_threads() == 2
    device.cap_cpu_threads(3)  # never more than the setting already says
    assert device.resolve_device("cpu").threads == 2
    device.cap_cpu_threads(0)
    assert device.resolve_device("cpu").threads == 1
