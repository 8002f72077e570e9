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

    # The parameters outside the encoder: what HEAD_FILE holds.
    HEAD_TENSORS: tuple[str, ...] = ("classifier.weight", "classifier.bias")

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
        # The head file says which head it is: an attention head has its queries.
        kind = AspectAttentionClassifier if "queries" in head else AspectTokenClassifier if "aspect_ids" in head else cls
        missing = [k for k in kind.HEAD_TENSORS if k not in head]
        if missing:
            raise ValueError(f"{Path(path) / HEAD_FILE} is damaged: it lacks {', '.join(missing)}")
        model = kind(encoder, int(head["classifier.weight"].shape[0]))
        model.load_state_dict({k: head[k] for k in kind.HEAD_TENSORS}, strict=False)
        return model.eval()

    def save_pretrained(self, out_dir: str | os.PathLike, **kwargs) -> None:
        """Write the encoder as a Hugging Face directory and the head beside it."""
        from safetensors.torch import save_file

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.encoder.save_pretrained(out, **kwargs)
        tensors = {**dict(self.named_parameters()), **dict(self.named_buffers())}
        state = {k: tensors[k].detach().to("cpu", torch.float32 if tensors[k].is_floating_point() else tensors[k].dtype)
                 .contiguous() for k in self.HEAD_TENSORS}
        save_file(state, str(out / HEAD_FILE))

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, **kwargs):
        from transformers.modeling_outputs import SequenceClassifierOutput

        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        hidden = self.encoder(**inputs).last_hidden_state
        logits = self.head(hidden, attention_mask, input_ids=input_ids)
        loss = nn.functional.cross_entropy(logits.float(), labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)

    def head(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None, input_ids=None) -> torch.Tensor:
        """Logits ``(B, num_labels)`` from the encoder's last hidden states ``(B, T, H)``."""
        return self.classifier(self.dropout(_mean_pool(hidden, attention_mask)))


class _AspectHead(MeanPoolClassifier):
    """What the aspect heads share: outputs in groups of four per aspect (mentioned, negative, neutral,
    positive; :mod:`pipeline.aspects.model`), each group read from that aspect's own features ``(B, A, 2H)``.

    ``classifier`` is an ``nn.Linear(2H, 4A)`` used group by group (row ``4a+k`` reads aspect a's
    features), so the output-layer helpers (bias shifts, temperature) apply to it unchanged. We write these
    heads rather than take them from a library: transformers has none with features per group of labels.
    """

    GROUP = 4

    def __init__(self, encoder, num_labels: int, *, dropout: float | None = None):
        super().__init__(encoder, num_labels, dropout=dropout)
        if num_labels % self.GROUP:
            raise ValueError(f"an aspect head needs a multiple of {self.GROUP} outputs, got {num_labels}")
        self.n_aspects = num_labels // self.GROUP
        self.classifier = nn.Linear(2 * encoder.config.hidden_size, num_labels)
        nn.init.normal_(self.classifier.weight, std=getattr(encoder.config, "initializer_range", 0.02))
        nn.init.zeros_(self.classifier.bias)

    def grouped_logits(self, features: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, 4A)`` from per-aspect features ``(B, A, 2H)`` (dropout applied here)."""
        weight = self.classifier.weight.view(self.n_aspects, self.GROUP, -1).to(features.dtype)
        logits = torch.einsum("baf,akf->bak", self.dropout(features), weight)
        return logits.reshape(features.shape[0], -1) + self.classifier.bias.to(logits.dtype)


class AspectAttentionClassifier(_AspectHead):
    """Each aspect reads the sentence through its own attention: a learned query per aspect, softmaxed over
    the tokens' last hidden states (padding masked), picks the words that speak of it ("waiter",
    "overpriced"); its outputs come from ``[attended_a ; mean]``. One encoder pass answers every aspect.
    """

    HEAD_TENSORS = ("queries", "classifier.weight", "classifier.bias")

    def __init__(self, encoder, num_labels: int, *, dropout: float | None = None):
        super().__init__(encoder, num_labels, dropout=dropout)
        std = getattr(encoder.config, "initializer_range", 0.02)
        # Small queries start as near-uniform attention, i.e. as the mean pool.
        self.queries = nn.Parameter(torch.randn(self.n_aspects, encoder.config.hidden_size) * std)

    def head(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None, input_ids=None) -> torch.Tensor:
        scores = torch.einsum("bth,ah->bat", hidden, self.queries.to(hidden.dtype))
        if attention_mask is not None:
            scores = scores.masked_fill(attention_mask.unsqueeze(1) == 0, torch.finfo(scores.dtype).min)
        attended = torch.einsum("bat,bth->bah", torch.softmax(scores, dim=-1), hidden)
        mean = _mean_pool(hidden, attention_mask).unsqueeze(1).expand_as(attended)
        return self.grouped_logits(torch.cat([attended, mean], dim=-1))


class AspectTokenClassifier(_AspectHead):
    """An aspect model that reads every aspect through the whole encoder: each aspect has its own input
    token, appended after the sentence ("[CLS] the waiter was rude [SEP] <food> <service> ... [SEP]"), and
    its four outputs come from that token's last hidden state beside the sentence's mean. Through six
    layers of self-attention each aspect token gathers what the sentence says of it, as the sentence-pair
    formulation ("sentence", "aspect") does, but all aspects in one pass: a few tokens more per sentence
    instead of one pass per aspect.

    The aspect tokens are new rows of the encoder's embedding matrix (ids from the old vocabulary size
    on; the tokenizer never produces them), each started at the mean embedding of its aspect's name
    ("service", "anecdotes / miscellaneous"). ``aspect_ids`` holds them in head order; the caller appends
    :func:`pipeline.aspects.model.aspect_suffix` to every segment.
    """

    HEAD_TENSORS = ("aspect_ids", "classifier.weight", "classifier.bias")

    def __init__(self, encoder, num_labels: int, *, dropout: float | None = None):
        super().__init__(encoder, num_labels, dropout=dropout)
        self.register_buffer("aspect_ids", torch.zeros(self.n_aspects, dtype=torch.long))  # set or loaded after

    @classmethod
    def from_encoder(cls, path_or_id: str, *, num_labels: int, id2label: dict | None = None,
                     label2id: dict | None = None, aspect_names=None) -> AspectTokenClassifier:
        """A fresh head on a pre-trained encoder, with one new input token per aspect of ``aspect_names``."""
        from pipeline.models.loading import load_tokenizer

        model = super().from_encoder(path_or_id, num_labels=num_labels, id2label=id2label, label2id=label2id)
        names = list(aspect_names or [])
        if len(names) != model.n_aspects:
            raise ValueError(f"{len(names)} aspect names for {num_labels} outputs")
        tokenizer = load_tokenizer(path_or_id)
        first = model.encoder.get_input_embeddings().weight.shape[0]
        model.encoder.resize_token_embeddings(first + len(names), mean_resizing=False)  # rows set just below
        table = model.encoder.get_input_embeddings().weight
        with torch.no_grad():
            for a, name in enumerate(names):
                pieces = tokenizer(name.replace("/", " / "), add_special_tokens=False)["input_ids"] or \
                    [tokenizer.unk_token_id or 0]
                table[first + a] = table[torch.tensor(pieces)].mean(dim=0)
        model.aspect_ids = torch.arange(first, first + len(names), dtype=torch.long)
        return model

    def head(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None, input_ids=None) -> torch.Tensor:
        if input_ids is None:
            raise ValueError("an aspect token head reads the input ids")
        at = (input_ids.unsqueeze(-1) == self.aspect_ids.view(1, 1, -1)).to(hidden.dtype)  # (B, T, A)
        tokens = torch.einsum("bta,bth->bah", at, hidden)
        # The sentence's mean leaves the aspect tokens out.
        mask = (attention_mask if attention_mask is not None else torch.ones_like(input_ids)).to(hidden.dtype)
        mean = _mean_pool(hidden, mask * (1 - at.sum(-1).clamp(max=1))).unsqueeze(1).expand_as(tokens)
        return self.grouped_logits(torch.cat([tokens, mean], dim=-1))


def _mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """The mean of the token states under the attention mask (the encoder's sentence embedding)."""
    if attention_mask is None:
        return hidden.mean(dim=1)
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


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
