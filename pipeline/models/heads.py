"""A mean-pooling classification head: how all-MiniLM-L6-v2 was pre-trained to summarise a text.

transformers' ``*ForSequenceClassification`` reads the [CLS] token through a pooler layer
that this sentence-transformers encoder never trained. :class:`MeanPoolClassifier` instead
averages the token embeddings under the attention mask (the encoder's own sentence
embedding) and applies dropout and one linear layer.

A saved mean-pool model is a normal encoder directory (``config.json``, weights, tokenizer)
plus ``head.safetensors``; its ``tastebud.json`` says ``"head": "mean"``.
:func:`pipeline.models.loading.load_classifier` dispatches on that, so every predictor
loads it offline like any other fine-tuned model.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

HEAD_FILE = "head.safetensors"


class MeanPoolClassifier(nn.Module):
    """Encoder + masked mean pooling + dropout + linear layer; called like a ``*ForSequenceClassification``.

    Example:
        >>> model = MeanPoolClassifier.from_encoder("path/to/minilm", num_labels=3)  # doctest: +SKIP
        >>> model(input_ids=ids, attention_mask=mask).logits.shape  # doctest: +SKIP
        torch.Size([2, 3])
    """

    def __init__(self, encoder, num_labels: int, *, dropout: float | None = None):
        super().__init__()
        self.encoder = encoder
        self.config = encoder.config
        self.config.num_labels = num_labels
        rate = getattr(encoder.config, "hidden_dropout_prob", 0.1) if dropout is None else dropout
        self.dropout = nn.Dropout(rate)
        self.classifier = nn.Linear(encoder.config.hidden_size, num_labels)
        nn.init.normal_(self.classifier.weight, std=getattr(encoder.config, "initializer_range", 0.02))
        nn.init.zeros_(self.classifier.bias)

    @classmethod
    def from_encoder(cls, path_or_id: str, *, num_labels: int, id2label: dict | None = None,
                     label2id: dict | None = None) -> MeanPoolClassifier:
        """A fresh head on a pre-trained encoder."""
        from transformers import AutoModel

        encoder = AutoModel.from_pretrained(path_or_id, add_pooling_layer=False) if _takes_pooling(path_or_id) \
            else AutoModel.from_pretrained(path_or_id)
        model = cls(encoder, num_labels)
        if id2label:
            model.config.id2label, model.config.label2id = dict(id2label), dict(label2id or {})
        return model

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> MeanPoolClassifier:
        """Load a saved mean-pool model directory (encoder files + ``head.safetensors``)."""
        from safetensors.torch import load_file
        from transformers import AutoModel

        head = load_file(str(Path(path) / HEAD_FILE))
        encoder = AutoModel.from_pretrained(path, add_pooling_layer=False) if _takes_pooling(path) \
            else AutoModel.from_pretrained(path)
        model = cls(encoder, int(head["classifier.weight"].shape[0]))
        model.classifier.load_state_dict({"weight": head["classifier.weight"], "bias": head["classifier.bias"]})
        return model.eval()

    def save_pretrained(self, out_dir: str | os.PathLike, **kwargs) -> None:
        """Write the encoder as a Hugging Face directory and the head beside it."""
        from safetensors.torch import save_file

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.encoder.save_pretrained(out, **kwargs)
        state = {f"classifier.{k}": v.detach().to("cpu", torch.float32).contiguous() for k, v in self.classifier.state_dict().items()}
        save_file(state, str(out / HEAD_FILE))

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, **kwargs):
        from transformers.modeling_outputs import SequenceClassifierOutput

        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        hidden = self.encoder(**inputs).last_hidden_state
        if attention_mask is None:
            pooled = hidden.mean(dim=1)
        else:
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        logits = self.classifier(self.dropout(pooled))
        loss = nn.functional.cross_entropy(logits.float(), labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)


def is_mean_pool_dir(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a saved mean-pool model (its head file is there)."""
    return (Path(path) / HEAD_FILE).is_file()


def _takes_pooling(path_or_id) -> bool:
    """BERT-like encoders build a pooler the mean head never uses; skip it where the class allows."""
    from transformers import AutoConfig

    try:
        model_type = AutoConfig.from_pretrained(path_or_id).model_type
    except (OSError, ValueError):
        return False
    return model_type in ("bert", "roberta", "xlm-roberta", "mpnet")


def output_layer(model) -> nn.Linear:
    """The linear layer that produces a classifier's logits (the last one with ``num_labels`` outputs)."""
    num_labels = model.config.num_labels
    found = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == num_labels]
    if not found:
        raise ValueError("the model has no linear output layer with one unit per label")
    return found[-1]


def bake_adjustment(model, temperature: float, class_bias) -> None:
    """Rewrite the output layer so it computes ``logits / temperature + class_bias`` (in place).

    Every predictor then applies the validation-fitted calibration and class offsets without
    knowing about them (see :mod:`pipeline.evaluation.calibration`).

    Example:
        >>> bake_adjustment(model, 1.7, [0.0, -0.3, 0.1])  # doctest: +SKIP
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    layer = output_layer(model)
    with torch.no_grad():
        layer.weight.div_(temperature)
        bias = torch.as_tensor(list(class_bias), dtype=layer.weight.dtype, device=layer.weight.device)
        if layer.bias is None:
            layer.bias = nn.Parameter(bias.clone())
        else:
            layer.bias.div_(temperature).add_(bias)
