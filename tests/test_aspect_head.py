"""The aspect heads beyond the mean: per-aspect attention (pipeline.models.heads.AspectAttentionClassifier) and
per-aspect input tokens (AspectTokenClassifier): what they compute, how they save and load, that review models
refuse them, and that they learn which words speak of which aspect."""

from __future__ import annotations

import copy
import random

import numpy as np
import pytest
import torch

from pipeline.aspects.fit import (
    AT_LEAST_ONE_FLAG, bake_threshold, best_threshold, fit_aspects, labels_say_at_least_one, load_aspect_model,
    predict_aspects,
)
from pipeline.aspects.model import TARGET_OF, aspect_suffix, at_least_one, segment_reviews
from pipeline.aspects.train import aspect_train_config
from pipeline.models.heads import HEAD_FILE, AspectAttentionClassifier, AspectTokenClassifier, MeanPoolClassifier
from pipeline.models.loading import load_classifier
from store.errors import TastebudError
from tests.tiny_model import save_tiny_classifier

ASPECTS = ["food", "service", "price"]
HEADS = {"attention": AspectAttentionClassifier, "tokens": AspectTokenClassifier}


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    return str(save_tiny_classifier(tmp_path_factory.mktemp("tiny") / "base"))


def _ids(n=3, length=12, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(1000, 2000, (n, length), generator=generator)


def test_each_aspect_reads_the_sentence_through_its_own_attention(tiny_base):
    model, _ = load_aspect_model(tiny_base, ASPECTS, head="attention")
    assert isinstance(model, AspectAttentionClassifier) and model.queries.shape == (3, 32)
    ids = _ids()
    mask = torch.ones_like(ids)
    before = model(input_ids=ids, attention_mask=mask).logits
    assert before.shape == (3, 12)
    # Changing the service query changes the service outputs (4..7) and nothing else.
    with torch.no_grad():
        model.queries[1] = torch.randn(32, generator=torch.Generator().manual_seed(3)) * 3
    after = model(input_ids=ids, attention_mask=mask).logits
    changed = (after - before).abs().amax(dim=0) > 1e-6
    assert changed.tolist() == [False] * 4 + [True] * 4 + [False] * 4
    # Padding is masked out of every aspect's attention: the same sentence padded longer reads the same.
    padded = torch.cat([ids, torch.zeros((3, 5), dtype=ids.dtype)], dim=1)
    padded_mask = torch.cat([mask, torch.zeros((3, 5), dtype=mask.dtype)], dim=1)
    assert torch.allclose(model(input_ids=padded, attention_mask=padded_mask).logits, after, atol=1e-5)


def test_each_aspect_has_its_own_token_after_every_segment(tiny_base):
    model, tokenizer = load_aspect_model(tiny_base, ["food", "anecdotes/miscellaneous"], head="tokens")
    vocab = tokenizer.vocab_size
    assert model.aspect_ids.tolist() == [vocab, vocab + 1]  # new rows, never produced by the tokenizer
    table = model.encoder.get_input_embeddings().weight
    pieces = tokenizer("anecdotes / miscellaneous", add_special_tokens=False)["input_ids"]
    assert torch.allclose(table[vocab + 1], table[torch.tensor(pieces)].mean(dim=0))  # starts at its name's meaning
    suffix = aspect_suffix(model, tokenizer)
    assert suffix == (vocab, vocab + 1, tokenizer.sep_token_id)
    assert aspect_suffix(load_aspect_model(tiny_base, ASPECTS, head="mean")[0], tokenizer) == ()
    text = "The tacos were great. " + "The waiter forgot us again and again " * 6 + "."
    segments = segment_reviews(tokenizer, [text], max_length=24, suffix=suffix)
    ids, mask = segments.encoded.padded(np.arange(len(segments.review)), 1)
    assert len(segments.review) >= 3 and ids.shape[1] <= 24  # windows leave room for the aspect tokens
    for row, used in zip(ids, mask.sum(axis=1)):
        assert row[0] == tokenizer.cls_token_id and tuple(row[used - 3 : used]) == suffix
        assert row[used - 4] == tokenizer.sep_token_id
    with pytest.raises(ValueError, match="max_length must be at least 7"):
        segment_reviews(tokenizer, [text], max_length=6, suffix=suffix)
    # Padding changes nothing, and an aspect's outputs come from its own token.
    model.eval()
    padded = np.concatenate([ids, np.zeros((len(ids), 4), dtype=ids.dtype)], axis=1)
    padded_mask = np.concatenate([mask, np.zeros((len(ids), 4), dtype=mask.dtype)], axis=1)
    with torch.no_grad():
        a = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).logits
        b = model(input_ids=torch.from_numpy(padded), attention_mask=torch.from_numpy(padded_mask)).logits
    assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("head", sorted(HEADS))
def test_saved_aspect_heads_load_as_saved_and_thresholds_bake(tiny_base, tmp_path, head):
    model, tokenizer = load_aspect_model(tiny_base, ASPECTS, head=head)
    with torch.no_grad():
        model.classifier.weight.normal_(0, 1.0)  # something a reload could not guess
        if head == "attention":
            model.queries.normal_(0, 1.0)
    model.save_pretrained(tmp_path / "m")
    tokenizer.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / HEAD_FILE).is_file()
    reloaded, _ = load_aspect_model(str(tmp_path / "m"))
    assert type(reloaded) is HEADS[head]
    texts = ["Great tacos but the waiter was rude.", "Too expensive.", ""]
    p_m, p_pol, spans = predict_aspects(model.eval(), tokenizer, texts, max_length=32)
    q_m, q_pol, q_spans = predict_aspects(reloaded, tokenizer, texts, max_length=32)
    assert np.allclose(p_m, q_m, atol=1e-6) and np.allclose(p_pol, q_pol, atol=1e-6) and (spans == q_spans).all()
    # The fitted mention threshold is baked into the head's bias like the mean head's.
    shifted = copy.deepcopy(reloaded)
    bake_threshold(shifted, 0.3)
    s_m, s_pol, _ = predict_aspects(shifted, tokenizer, texts, max_length=32)
    assert ((s_m >= 0.5) == (p_m >= 0.3)).all() and np.allclose(s_pol, p_pol, atol=1e-6)
    # A mean head saved the same way still loads as a mean head.
    mean, _ = load_aspect_model(tiny_base, ASPECTS, head="mean")
    mean.save_pretrained(tmp_path / "mean")
    tokenizer.save_pretrained(tmp_path / "mean")
    assert type(load_aspect_model(str(tmp_path / "mean"))[0]) is MeanPoolClassifier


def test_a_head_file_missing_a_tensor_is_refused(tiny_base, tmp_path):
    from safetensors.torch import load_file, save_file

    model, tokenizer = load_aspect_model(tiny_base, ASPECTS, head="attention")
    model.save_pretrained(tmp_path / "m")
    head = load_file(str(tmp_path / "m" / HEAD_FILE))
    # A damaged head file (the classifier's weight lost): a clear error, not a silently random head.
    save_file({"queries": head["queries"], "classifier.bias": head["classifier.bias"]}, str(tmp_path / "m" / HEAD_FILE))
    with pytest.raises(TastebudError, match="classifier.weight"):
        load_aspect_model(str(tmp_path / "m"))


@pytest.mark.parametrize("head", sorted(HEADS))
def test_review_models_refuse_the_aspect_heads(tiny_base, head):
    with pytest.raises(TastebudError, match="aspect models"):
        load_classifier(tiny_base, head=head)


@pytest.mark.parametrize("head", sorted(HEADS))
def test_reduced_precision_copies_of_an_aspect_head_agree(tiny_base, head):
    from pipeline.models.inference import is_int8_quantized, quantize_linear_int8

    model, tokenizer = load_aspect_model(tiny_base, ASPECTS, head=head)
    ids = _ids(seed=1)
    if head == "tokens":
        ids[:, -len(ASPECTS) - 1 :] = torch.tensor(aspect_suffix(model, tokenizer))
    mask = torch.ones_like(ids)
    mask[0, 8:] = 0
    reference = model(input_ids=ids, attention_mask=mask).logits
    int8 = quantize_linear_int8(copy.deepcopy(model))
    assert is_int8_quantized(int8) and isinstance(int8.classifier, torch.nn.Linear)  # the head stays fp32
    assert torch.allclose(int8(input_ids=ids, attention_mask=mask).logits, reference, atol=0.2)
    bf16 = copy.deepcopy(model).to(torch.bfloat16)
    assert torch.allclose(bf16(input_ids=ids, attention_mask=mask).logits.float(), reference, atol=0.1)


WORDS = {"food": ("tacos", "noodles", "pizza"), "service": ("waiter", "server", "staff"),
         "price": ("bill", "prices", "cost")}
GOOD, BAD = ("great", "lovely", "excellent"), ("awful", "rude", "terrible")


def _keyword_sentences(n, seed):
    """Sentences of one or two aspect clauses ("the waiter was rude and the tacos were great") with targets."""
    rng = random.Random(seed)
    texts, targets = [], []
    for _ in range(n):
        chosen = rng.sample(ASPECTS, rng.choice([1, 2]))
        row = [TARGET_OF["absent"]] * len(ASPECTS)
        clauses = []
        for aspect in chosen:
            polarity = rng.choice(["positive", "negative"])
            clauses.append(f"the {rng.choice(WORDS[aspect])} was {rng.choice(GOOD if polarity == 'positive' else BAD)}")
            row[ASPECTS.index(aspect)] = TARGET_OF[polarity]
        texts.append(" and ".join(clauses) + ".")
        targets.append(row)
    return texts, np.array(targets, dtype=np.int64)


@pytest.mark.slow
@pytest.mark.parametrize("head", sorted(HEADS))
def test_the_aspect_heads_learn_which_words_speak_of_which_aspect(tiny_base, head):
    # Two clauses of opposite polarity in one sentence: a pooling shared by every aspect has to untangle
    # them in 32 dimensions; each aspect's own attention only has to find its noun's clause.
    train_texts, train_targets = _keyword_sentences(240, seed=0)
    val_texts, val_targets = _keyword_sentences(60, seed=1)
    config = aspect_train_config(epochs=12, learning_rate=3e-3, batch_size=16, max_length=24, head=head,
                                 early_stopping_patience=0, device="cpu", precision="fp32")
    fitted = fit_aspects(train_texts, train_targets, val_texts, val_targets, ASPECTS, config, base_model=tiny_base,
                         log=lambda message: None)
    assert isinstance(fitted.model, HEADS[head])
    metrics = fitted.val_metrics
    # A model that learned nothing sits near 0.5 detection F1 and 0.5 polarity accuracy here.
    assert metrics["detection"]["micro_f1"] > 0.9, metrics["detection"]
    assert metrics["polarity"]["accuracy"] > 0.8, metrics["polarity"]


def test_every_review_gets_at_least_one_aspect_when_the_labels_say_so(tiny_base, tmp_path):
    # Pooled logits: review 0 mentions food; review 1 nothing clearly (service is its most likely);
    # review 2 is blank (left alone).
    mentioned = torch.tensor([[2.0, -1.0, -3.0], [-0.5, -0.25, -5.0], [-1.0, -2.0, -3.0]])
    lifted = at_least_one(mentioned, torch.tensor([True, True, False]))
    assert lifted[0].tolist() == mentioned[0].tolist() and lifted[2].tolist() == mentioned[2].tolist()
    assert lifted[1].tolist() == [-0.5, 0.0, -5.0]  # p 0.5: the borderline, counted as mentioned
    # The rule comes from the labels: SemEval-like (every labeled review has an aspect) or not.
    some = np.array([[3, 0, 0], [0, 1, 0], [0, 0, 4], [-100, -100, 2]] * 10)
    assert labels_say_at_least_one(some)
    assert not labels_say_at_least_one(np.vstack([some, np.zeros((5, 3), dtype=int)]))  # 5 of 45 have none
    assert not labels_say_at_least_one(some[:8])  # too few to tell
    # The threshold search applies it: a strict threshold no longer leaves a review with none.
    targets = np.array([[3, 0, 0], [0, 2, 0], [0, 0, 1], [3, 0, 0]])
    p = np.array([[0.9, 0.1, 0.1], [0.3, 0.45, 0.1], [0.2, 0.1, 0.35], [0.6, 0.55, 0.1]])
    assert best_threshold(targets, p) < 0.35 < best_threshold(targets, p, at_least_one_rule=True)
    # predict_aspects follows the model's setting, which survives save and load.
    model, tokenizer = load_aspect_model(tiny_base, ASPECTS, head="tokens")
    with torch.no_grad():
        model.classifier.bias[0::4] = -20.0  # nothing is ever mentioned
    texts = ["The tacos.", "", "Slow service. Loud room."]
    none_m, _, _ = predict_aspects(model.eval(), tokenizer, texts, max_length=32)
    assert (none_m < 0.5).all()
    setattr(model.config, AT_LEAST_ONE_FLAG, True)
    model.save_pretrained(tmp_path / "m")
    tokenizer.save_pretrained(tmp_path / "m")
    reloaded, _ = load_aspect_model(str(tmp_path / "m"))
    p_m, _, _ = predict_aspects(reloaded, tokenizer, texts, max_length=32)
    assert ((p_m >= 0.5).sum(axis=1) == [1, 0, 1]).all()
    assert np.allclose(p_m[p_m >= 0.5], 0.5)
    off, _, _ = predict_aspects(reloaded, tokenizer, texts, max_length=32, at_least_one_rule=False)
    assert (off < 0.5).all()


def test_review_options_that_aspect_training_cannot_use_are_refused():
    assert aspect_train_config().calibrate is False and aspect_train_config().class_weighting == "none"
    for option, value in (("calibrate", True), ("prior_adjust", True), ("class_weighting", "balanced"),
                          ("ensemble", True), ("grad_accum", 2), ("truncation", "head")):
        with pytest.raises(ValueError, match=f"{option}=.* does not apply to aspect models"):
            aspect_train_config(**{option: value})
    # The whole config of an aspect run goes back in as job parameters (a background run) unchanged.
    assert aspect_train_config(**aspect_train_config(epochs=3).to_dict()).epochs == 3
