"""Tiny Hugging Face models built from configs (random init, nothing downloaded), shared by the
tests of real models, of the optimizers on transformers and of the curvature tracker."""

from __future__ import annotations

import torch

#: the tiny BERT every test starts from; tests override single fields
BERT = dict(
    vocab_size=40,
    hidden_size=16,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=24,
    max_position_embeddings=16,
    num_labels=3,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
)


def tiny_bert(seed: int = 0, **overrides):
    """A ``BertForSequenceClassification`` from a tiny config, seeded (float32, train mode)."""
    import transformers

    torch.manual_seed(seed)
    cfg = transformers.BertConfig(**{**BERT, **overrides})
    return transformers.BertForSequenceClassification(cfg)
