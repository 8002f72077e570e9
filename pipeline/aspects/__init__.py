"""Aspects: which of the store's aspects (food, service, price, place…) a review speaks of, and how.

One encoder reads every sentence of a review and answers for every aspect at once (a multi-head
classifier: per aspect, one "mentioned" logit and three polarity logits); a review's answer pools its
sentences' answers (:mod:`pipeline.aspects.model`). ``train`` fine-tunes and registers such a model,
``scoring`` fills the store's aspect predictions, ``evaluation`` measures detection and polarity.
"""
