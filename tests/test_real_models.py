"""Curvature of real models: Hugging Face transformers built from tiny configs (random init).

The references are independent of curvlab's products and solvers: SciPy's ARPACK on plain
autograd Hessian-vector products (double backward under the math attention backend), or a
dense float64 block from ``torch.func``. transformers is a test dependency (pyproject's
``test`` extra, pinned in constraints.txt), so these tests run in ``make test``.
"""

from __future__ import annotations

import hf_models
import numpy as np
import pytest
import torch
from reference import arpack_top, plain_hvp_operator
from torch import nn

import curvlab as cl

transformers = pytest.importorskip("transformers")

DT = torch.float64


def tiny_bert(seed=0):
    model = hf_models.tiny_bert(seed).to(DT).eval()
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 40, (6, 7), generator=g)
    mask = torch.ones_like(ids)
    ids[:, -2:], mask[:, -2:] = 0, 0  # padded positions (token 0 is BERT's padding row)
    y = torch.randint(0, 3, (6,), generator=g)
    data = [
        ({"input_ids": ids[:4], "attention_mask": mask[:4]}, y[:4]),
        ({"input_ids": ids[4:], "attention_mask": mask[4:]}, y[4:]),
    ]
    return model, data


def tiny_gpt2(seed=0):
    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(
        vocab_size=40,
        n_positions=16,
        n_embd=16,
        n_layer=2,
        n_head=2,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=0,
        eos_token_id=0,
    )
    model = transformers.GPT2LMHeadModel(cfg).to(DT).eval()
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 40, (4, 8), generator=g)
    return model, [(ids, ids[:, 1:])]


def next_token_logits(out, batch):
    """(B, T, V) logits of a causal LM -> (B, V, T-1): token-level cross-entropy's layout."""
    return out.logits[:, :-1].transpose(1, 2)


def top3_reference(model, loss_fn, data, params, output):
    return arpack_top(model, loss_fn, data, params, output, k=3)


@pytest.mark.parametrize("mode", ["rev-rev", "fwd-rev"])
def test_bert_top3_hessian_eigenvalues_match_scipy_on_plain_autograd(mode):
    model, data = tiny_bert()
    loss_fn = nn.CrossEntropyLoss()
    H = cl.HessianOperator(model, loss_fn, data, mode=mode)  # ModelOutput: its logits
    res = cl.eigsh(H, k=3, seed=0, tol=1e-8)
    ref = top3_reference(model, loss_fn, data, H.params, lambda o: o.logits)
    np.testing.assert_allclose(np.sort(res.eigenvalues.numpy()), ref, rtol=1e-8, atol=1e-10)
    assert res.converged


def test_bert_selection_by_glob_and_frozen_embeddings():
    model, data = tiny_bert()
    loss_fn = nn.CrossEntropyLoss()
    H = cl.HessianOperator(model, loss_fn, data, params="bert.encoder.layer.1.*")
    assert H.param_names and all(n.startswith("bert.encoder.layer.1.") for n in H.param_names)
    res = cl.eigsh(H, k=3, seed=0, tol=1e-8)
    ref = top3_reference(model, loss_fn, data, H.params, lambda o: o.logits)
    np.testing.assert_allclose(np.sort(res.eigenvalues.numpy()), ref, rtol=1e-8, atol=1e-10)
    for p in model.bert.embeddings.parameters():
        p.requires_grad_(False)
    H2 = cl.HessianOperator(model, loss_fn, data)
    assert not any(n.startswith("bert.embeddings.") for n in H2.param_names)
    assert H2.shape[0] == sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_gpt2_token_level_products_tied_embeddings_and_modes():
    model, data = tiny_gpt2()
    loss_fn = nn.CrossEntropyLoss()
    assert model.lm_head.weight is model.transformer.wte.weight  # tied
    H = cl.HessianOperator(model, loss_fn, data, output=next_token_logits)
    assert H.shape[0] == sum(p.numel() for p in model.parameters())  # the tied weight once
    assert "lm_head.weight" not in H.param_names
    gen = torch.Generator().manual_seed(0)
    V = torch.randn(H.shape[0], 2, dtype=DT, generator=gen)
    ref_op = plain_hvp_operator(
        model, loss_fn, data, H.params, lambda o: next_token_logits(o, None)
    )
    ref = np.stack([ref_op.matvec(V[:, j].numpy()) for j in range(2)], 1)
    np.testing.assert_allclose((H @ V).numpy(), ref, rtol=1e-9, atol=1e-11)
    Hf = cl.HessianOperator(model, loss_fn, data, output=next_token_logits, mode="fwd-rev")
    torch.testing.assert_close(Hf @ V, H @ V, rtol=1e-9, atol=1e-11)
    # GGN and the Monte-Carlo Fisher: symmetric and PSD on a random subspace
    for op in (
        cl.GGNOperator(model, loss_fn, data, output=next_token_logits),
        cl.GGNOperator(model, loss_fn, data, output=next_token_logits, mc_samples=2, seed=0),
    ):
        M = V.T @ (op @ V)
        torch.testing.assert_close(M, M.T, rtol=1e-9, atol=1e-11)
        assert torch.linalg.eigvalsh(M).min() > -1e-10


def test_gpt2_gradient_checkpointing():
    model, data = tiny_gpt2()
    loss_fn = nn.CrossEntropyLoss()
    H = cl.HessianOperator(model, loss_fn, data, output=next_token_logits)
    v = torch.randn(H.shape[0], dtype=DT, generator=torch.Generator().manual_seed(1))
    ref = H @ v
    model.train()  # Hugging Face checkpoints only in train mode (dropout is 0 here)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    Hc = cl.HessianOperator(model, loss_fn, data, output=next_token_logits)
    torch.testing.assert_close(Hc @ v, ref, rtol=1e-10, atol=1e-12)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
    with pytest.raises(ValueError, match="use_reentrant=False"):
        Hr = cl.HessianOperator(model, loss_fn, data, output=next_token_logits)
        Hr @ v


def test_bert_loss_from_the_model_output_and_state_untouched():
    model, data = tiny_bert()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    risk = cl.EmpiricalRisk(model, nn.CrossEntropyLoss(), data)
    with torch.no_grad():
        ref = sum(len(y) / 6 * nn.functional.cross_entropy(model(**X).logits, y) for X, y in data)
    torch.testing.assert_close(risk.evaluate().loss, ref, rtol=1e-13, atol=0)
    cl.spectral_density(
        cl.HessianOperator(model, nn.CrossEntropyLoss(), data), num_probes=1, num_iter=5, seed=0
    )
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
