"""curvlab.track: CurvatureTracker, its records, plot, hand-written loop and the Hugging Face /
Lightning callbacks (each adapter skipped when its package is missing)."""

import math
import sys
import types

import matplotlib
import pytest
import torch
from hf_models import tiny_bert
from torch import nn
from torch.func import functional_call, hessian

import curvlab as cl
import curvlab.track as track
from curvlab.fourier import SpectralBiasTracker
from curvlab.track import CurvatureRecord, CurvatureTracker, track_training

DT = torch.float64


def mlp_problem(n=96, seed=0, hidden=10):
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 6, generator=g, dtype=DT)
    y = torch.randint(0, 3, (n,), generator=g)
    model = nn.Sequential(nn.Linear(6, hidden), nn.Tanh(), nn.Linear(hidden, 3)).to(DT)
    return model, nn.CrossEntropyLoss(), X, y


def dense_hessian(model, loss_fn, X, y):
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def f(theta):
        parts, i = {}, 0
        for name, shape in zip(names, shapes):
            m = math.prod(shape)
            parts[name] = theta[i : i + m].reshape(shape)
            i += m
        return loss_fn(functional_call(model, parts, (X,)), y)

    return hessian(f)(flat)


def sgd_step(model, loss_fn, X, y, opt):
    opt.zero_grad()
    loss_fn(model(X), y).backward()
    opt.step()


def test_recorded_eigenvalues_equal_dense_hessian_at_recorded_parameters():
    model, loss_fn, X, y = mlp_problem()
    tracker = CurvatureTracker(
        model, loss_fn, (X, y), every=3, k=2, seed=0, eigsh_kwargs={"tol": 1e-10}
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    expected = {}
    for step in range(10):
        if tracker.update():
            ev = torch.linalg.eigvalsh(dense_hessian(model, loss_fn, X, y))
            expected[step] = (ev[-2:], float(loss_fn(model(X), y).detach()))
        sgd_step(model, loss_fn, X, y, opt)
    assert [r.step for r in tracker.history] == [0, 3, 6, 9]
    for rec in tracker.history:
        ev, loss = expected[rec.step]
        torch.testing.assert_close(torch.tensor(rec.eigenvalues, dtype=DT), ev, rtol=1e-9, atol=0)
        assert rec.top == rec.eigenvalues[-1] == pytest.approx(float(ev[-1]), rel=1e-9)
        assert rec.loss == pytest.approx(loss, rel=1e-12)
        assert rec.converged and rec.warm == (rec.step > 0)
        assert rec.num_matvecs == rec.eig_matvecs > 0 and rec.seconds > 0
        assert rec.trace is None and rec.spectral_bias is None
    # the eigenvectors kept for the next warm start are those of the last record
    assert tracker.eigenvectors.shape == (sum(p.numel() for p in model.parameters()), 2)


def test_ggn_operator_matches_dense_ggn():
    model, loss_fn, X, y = mlp_problem(seed=1)
    tracker = CurvatureTracker(
        model,
        loss_fn,
        [(X[:48], y[:48]), (X[48:], y[48:])],
        operator="ggn",
        k=1,
        seed=0,
        eigsh_kwargs={"tol": 1e-10},
    )
    rec = tracker.record()
    G = cl.GGNOperator(model, loss_fn, [(X, y)]).to_dense()
    assert rec.top == pytest.approx(float(torch.linalg.eigvalsh(G)[-1]), rel=1e-9)


def digits_mlp(seed=0):
    ds = cl.problems.digits(split="train", dtype=DT)
    X, y = ds.tensors
    X, y = X.flatten(1)[:256], y[:256]
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(64, 16), nn.Tanh(), nn.Linear(16, 10)).to(DT)
    return model, nn.CrossEntropyLoss(), X, y


def test_warm_start_needs_fewer_products_than_cold():
    model, loss_fn, X, y = digits_mlp()
    kw = dict(every=1, k=1, seed=0)
    warm = CurvatureTracker(model, loss_fn, (X, y), **kw)
    cold = CurvatureTracker(model, loss_fn, (X, y), warm_start=False, **kw)
    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    for _ in range(8):
        warm.update()
        cold.update()
        sgd_step(model, loss_fn, X, y, opt)
    w = [r.eig_matvecs for r in warm.history[1:]]
    c = [r.eig_matvecs for r in cold.history[1:]]
    assert all(r.warm for r in warm.history[1:]) and not any(r.warm for r in cold.history)
    assert sum(w) < 0.85 * sum(c), (w, c)
    for a, b in zip(warm.history, cold.history):
        assert a.top == pytest.approx(b.top, rel=1e-6)


def test_warm_start_with_several_eigenvalues():
    model, loss_fn, X, y = digits_mlp(seed=1)
    kw = dict(every=1, k=3, seed=0, eigsh_kwargs={"check_multiplicity": False})
    warm = CurvatureTracker(model, loss_fn, (X, y), **kw)
    cold = CurvatureTracker(model, loss_fn, (X, y), warm_start=False, **kw)
    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    for _ in range(5):
        warm.update()
        cold.update()
        sgd_step(model, loss_fn, X, y, opt)
    assert sum(r.eig_matvecs for r in warm.history[1:]) < sum(
        r.eig_matvecs for r in cold.history[1:]
    )
    for a, b in zip(warm.history, cold.history):
        torch.testing.assert_close(torch.tensor(a.eigenvalues), torch.tensor(b.eigenvalues))


def test_update_counts_calls_and_steps_like_spectral_bias_tracker():
    model, loss_fn, X, y = mlp_problem(n=24, hidden=3)
    tr = CurvatureTracker(model, loss_fn, (X, y), every=4, seed=0)
    assert [tr.update() for _ in range(9)] == [i % 4 == 0 for i in range(9)]
    assert [r.step for r in tr.history] == [0, 4, 8]
    assert tr(step=12) and not tr.update(step=13)
    assert [r.step for r in tr.history] == [0, 4, 8, 12]
    rec = tr.record(step=100)
    assert rec is tr.history[-1] and rec.step == 100
    h = tr.history
    h.clear()  # a copy
    assert len(tr.history) == 5
    tr.reset()
    assert tr.history == [] and tr.eigenvectors is None
    assert "records=0" in repr(tr)


def test_one_batch_and_list_of_batches_agree_and_seeds_reproduce():
    model, loss_fn, X, y = mlp_problem(n=40, hidden=4)
    a = CurvatureTracker(model, loss_fn, (X, y), seed=3, trace=True).record()
    b = CurvatureTracker(model, loss_fn, [(X[:25], y[:25]), (X[25:], y[25:])], seed=3, trace=True)
    b = b.record()
    assert a.top == pytest.approx(b.top, rel=1e-8)
    assert a.seed == b.seed and a.trace == pytest.approx(b.trace, rel=1e-8)


def test_trace_and_spectral_bias_are_recorded():
    torch.manual_seed(0)
    x = torch.arange(32, dtype=DT).unsqueeze(1) / 32
    target = torch.sin(2 * math.pi * x[:, 0]) + 0.5 * torch.sin(2 * math.pi * 4 * x[:, 0])
    model = nn.Sequential(nn.Linear(1, 3), nn.Tanh(), nn.Linear(3, 1)).to(DT)  # 10 parameters
    sb = SpectralBiasTracker(x, target, [1, 4], every=1)
    tracker = CurvatureTracker(
        model,
        nn.MSELoss(),
        (x, target[:, None]),
        every=2,
        trace=True,
        trace_samples=30,
        spectral_bias=sb,
        seed=0,
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    traces = []
    for _ in range(5):
        if tracker.update():
            H = cl.HessianOperator(model, nn.MSELoss(), [(x, target[:, None])]).to_dense()
            traces.append(float(torch.trace(H)))
        sgd_step(model, nn.MSELoss(), x, target[:, None], opt)
    recs = tracker.history
    assert [r.step for r in recs] == [0, 2, 4]
    # Hutch++ with 30 products is exact for a 10 x 10 matrix (rank <= 30 / 3)
    assert [r.trace for r in recs] == pytest.approx(traces, rel=1e-8)
    assert recs[-1].trace_stderr == pytest.approx(0.0, abs=1e-8)
    assert recs[-1].num_matvecs == recs[-1].eig_matvecs + 30
    assert list(recs[-1].spectral_bias) == [1, 4]
    res = sb.result()
    assert res.steps.tolist() == [0, 2, 4]
    assert list(recs[-1].spectral_bias.values()) == pytest.approx(res.values[-1].tolist())
    with pytest.raises(TypeError):
        recs[-1].spectral_bias[1] = 0.0  # read-only
    d = recs[-1].as_dict()
    assert {"spectral_bias_1", "spectral_bias_4", "trace", "trace_stderr", "lambda_1"} <= set(d)
    assert "trace=" in repr(recs[-1]) and "spectral_bias=2 freqs" in repr(recs[-1])


def test_records_are_frozen_and_dicts_are_tidy():
    model, loss_fn, X, y = mlp_problem(n=24, hidden=3)
    tracker = CurvatureTracker(model, loss_fn, (X, y), k=2, every=1, seed=0)
    tracker.update()
    tracker.update()
    rec = tracker.history[0]
    with pytest.raises(AttributeError):
        rec.step = 5
    rows = tracker.as_dicts()
    assert [r["step"] for r in rows] == [0, 1]
    assert list(rows[0])[:6] == ["step", "loss", "lambda_1", "residual_1", "lambda_2", "residual_2"]
    assert rows[0]["lambda_1"] == rec.eigenvalues[1] >= rows[0]["lambda_2"] == rec.eigenvalues[0]
    assert rows[0]["trace"] is None and rows[1]["warm"] is True
    r = repr(rec)
    assert r.startswith("CurvatureRecord(step=0, eigenvalues=[") and "\n" not in r


def test_to_dataframe_without_pandas_raises_a_clear_import_error(monkeypatch):
    model, loss_fn, X, y = mlp_problem(n=24, hidden=3)
    tracker = CurvatureTracker(model, loss_fn, (X, y), seed=0)
    tracker.update()
    monkeypatch.setitem(sys.modules, "pandas", None)  # `import pandas` now fails
    with pytest.raises(ImportError, match="pip install pandas"):
        tracker.to_dataframe()


def test_to_dataframe_passes_the_rows_to_pandas(monkeypatch):
    """A stand-in pandas module (pandas is not a test dependency) receives the rows."""
    model, loss_fn, X, y = mlp_problem(n=24, hidden=3)
    tracker = CurvatureTracker(model, loss_fn, (X, y), every=1, seed=0)
    tracker.update()
    tracker.update()
    fake = types.ModuleType("pandas")
    fake.DataFrame = lambda rows: ("frame", rows)
    monkeypatch.setitem(sys.modules, "pandas", fake)
    kind, rows = tracker.to_dataframe()
    assert kind == "frame" and rows == tracker.as_dicts()


def test_to_dataframe_with_real_pandas():
    pd = pytest.importorskip("pandas")
    model, loss_fn, X, y = mlp_problem(n=24, hidden=3)
    tracker = CurvatureTracker(model, loss_fn, (X, y), every=1, k=2, seed=0)
    for _ in range(3):
        tracker.update()
    df = tracker.to_dataframe()
    assert isinstance(df, pd.DataFrame) and len(df) == 3
    assert df["lambda_1"].tolist() == [r.top for r in tracker.history]


def test_plot_returns_axes_with_the_2_over_lr_line():
    model, loss_fn, X, y = mlp_problem(n=24, hidden=3)
    tracker = CurvatureTracker(model, loss_fn, (X, y), every=1, k=2, trace=True, seed=0)
    for _ in range(3):
        tracker.update()
    ax = tracker.plot(lr=0.5)
    assert isinstance(ax, matplotlib.axes.Axes)
    assert len(ax.lines) == 3  # lambda_1, lambda_2, 2/lr
    assert ax.lines[-1].get_ydata()[0] == pytest.approx(4.0)
    assert list(ax.lines[0].get_xdata()) == [0, 1, 2]
    ax2 = cl.plot.curvature_history(tracker.history, which="trace", lr=[0.5, 1.0], label="run")
    assert len(ax2.lines) == 3 and len(ax2.collections) == 1
    fig, ax3 = matplotlib.pyplot.subplots()
    assert cl.plot.curvature_history(tracker, ax=ax3) is ax3
    with pytest.raises(TypeError, match="non-empty"):
        cl.plot.curvature_history([])
    with pytest.raises(ValueError, match="lr must be positive"):
        cl.plot.curvature_history(tracker.history, lr=0.0)
    no_trace = CurvatureTracker(model, loss_fn, (X, y), seed=0)
    no_trace.record()
    with pytest.raises(ValueError, match="trace=True"):
        no_trace.plot(which="trace")
    matplotlib.pyplot.close("all")


def test_eval_mode_measures_a_dropout_model_and_restores_its_mode():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Dropout(0.5), nn.Tanh(), nn.Linear(6, 2)).to(DT)
    model.train()
    X, y = torch.randn(20, 4, dtype=DT), torch.randint(0, 2, (20,))
    with pytest.raises(ValueError, match="dropout"):
        CurvatureTracker(model, nn.CrossEntropyLoss(), (X, y), seed=0).record()
    tracker = CurvatureTracker(model, nn.CrossEntropyLoss(), (X, y), seed=0, eval_mode=True)
    rec = tracker.record()
    assert model.training and all(m.training for m in model.modules())
    model.eval()
    dense = cl.HessianOperator(model, nn.CrossEntropyLoss(), [(X, y)]).to_dense()
    assert rec.top == pytest.approx(float(torch.linalg.eigvalsh(dense)[-1]), rel=1e-7)


def test_bad_arguments():
    model, loss_fn, X, y = mlp_problem(n=24, hidden=3)
    with pytest.raises(ValueError, match="every"):
        CurvatureTracker(model, loss_fn, (X, y), every=0)
    with pytest.raises(ValueError, match="k must"):
        CurvatureTracker(model, loss_fn, (X, y), k=True)
    with pytest.raises(ValueError, match="operator"):
        CurvatureTracker(model, loss_fn, (X, y), operator="fisher!")
    with pytest.raises(ValueError, match="v0"):
        CurvatureTracker(model, loss_fn, (X, y), eigsh_kwargs={"v0": torch.ones(3)})
    with pytest.raises(TypeError, match="SpectralBiasTracker"):
        CurvatureTracker(model, loss_fn, (X, y), spectral_bias=object())
    with pytest.raises(TypeError, match="nn.Module"):
        CurvatureTracker(lambda x: x, loss_fn, (X, y))
    with pytest.raises(TypeError, match="CurvatureTracker"):
        track_training(object(), None, [])


def test_track_training_hand_written_loop():
    model, loss_fn, X, y = mlp_problem(n=48, hidden=5)
    tracker = CurvatureTracker(model, loss_fn, (X, y), every=3, seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=0.3)
    batches = [(X[:24].float(), y[:24]), (X[24:].float(), y[24:])]  # cast to the model's dtype
    losses = track_training(tracker, opt, batches, epochs=4, max_steps=7)
    assert len(losses) == 7 and all(math.isfinite(v) for v in losses)
    assert [r.step for r in tracker.history] == [0, 3, 6]
    # the same loop by hand gives the same parameters and records
    model2, _, _, _ = mlp_problem(n=48, hidden=5)
    tracker2 = CurvatureTracker(model2, loss_fn, (X, y), every=3, seed=0)
    opt2 = torch.optim.SGD(model2.parameters(), lr=0.3)
    for step, (xb, yb) in enumerate((batches * 4)[:7]):
        tracker2.update(step)
        sgd_step(model2, loss_fn, xb.to(DT), yb, opt2)
    for a, b in zip(tracker.history, tracker2.history):
        assert a.top == pytest.approx(b.top, rel=1e-10)
    # a final record when the last step is due
    tracker3 = CurvatureTracker(model, loss_fn, (X, y), every=2, seed=0)
    track_training(tracker3, opt, batches, epochs=1)
    assert [r.step for r in tracker3.history] == [0, 2]


def test_track_training_with_a_curvlab_optimizer():
    model, loss_fn, X, y = mlp_problem(n=32, hidden=4)
    tracker = CurvatureTracker(model, loss_fn, (X, y), every=2, seed=0)
    opt = cl.optim.AdaHessian(model.parameters(), lr=0.05, seed=0)
    losses = track_training(tracker, opt, [(X, y)], epochs=3)
    assert len(losses) == 3 and [r.step for r in tracker.history] == [0, 2]


# -- Hugging Face -------------------------------------------------------------------------------
def test_hf_callback_in_a_real_trainer_run(tmp_path):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")  # the Trainer needs it (transformers[torch])
    from curvlab.track import HFTrainerCallback

    model = tiny_bert(0, num_hidden_layers=1, num_labels=2)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 40, (16, 6), generator=g)
    mask = torch.ones_like(ids)
    labels = torch.randint(0, 2, (16,), generator=g)
    train = [
        {"input_ids": ids[i], "attention_mask": mask[i], "labels": labels[i]} for i in range(16)
    ]
    tracker = CurvatureTracker(
        model,
        nn.CrossEntropyLoss(),
        ({"input_ids": ids, "attention_mask": mask}, labels),
        every=2,
        seed=0,
        eval_mode=True,
    )
    cb = HFTrainerCallback(tracker)
    assert isinstance(cb, transformers.TrainerCallback)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=5,
        per_device_train_batch_size=8,
        learning_rate=1e-2,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        seed=0,
    )
    trainer = transformers.Trainer(model=model, args=args, train_dataset=train, callbacks=[cb])
    trainer.train()
    recs = tracker.history
    assert [r.step for r in recs] == [0, 2, 4]
    assert recs[0].top != recs[-1].top  # the parameters changed between records
    assert all(r.converged for r in recs)  # float32 model, the tracker's tol=1e-4


def test_hf_callback_records_the_trainer_parameters(tmp_path):
    """Re-measure at the end of a run: the record at the final step equals a fresh eigsh."""
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")  # the Trainer needs it (transformers[torch])
    from curvlab.track import HFTrainerCallback

    model = tiny_bert(
        1,
        vocab_size=30,
        hidden_size=8,
        num_hidden_layers=1,
        intermediate_size=16,
        max_position_embeddings=8,
        num_labels=2,
    )
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, 30, (8, 5), generator=g)
    labels = torch.randint(0, 2, (8,), generator=g)
    train = [{"input_ids": ids[i], "labels": labels[i]} for i in range(8)]
    data = ({"input_ids": ids}, labels)
    tracker = CurvatureTracker(model, nn.CrossEntropyLoss(), data, every=3, seed=0)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=3,
        per_device_train_batch_size=8,
        learning_rate=5e-2,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        seed=0,
    )
    transformers.Trainer(
        model=model, args=args, train_dataset=train, callbacks=[HFTrainerCallback(tracker)]
    ).train()
    assert [r.step for r in tracker.history] == [0, 3]
    H = cl.HessianOperator(model, nn.CrossEntropyLoss(), [data])
    ref = cl.eigsh(H, k=1, seed=0, tol=1e-4)
    assert tracker.history[-1].top == pytest.approx(float(ref.eigenvalues[-1]), rel=1e-4)


def test_hf_callback_without_transformers_raises_import_error(monkeypatch):
    monkeypatch.delitem(vars(track), "HFTrainerCallback", raising=False)
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(ImportError, match="needs transformers"):
        track.HFTrainerCallback  # noqa: B018
    with pytest.raises(ImportError, match="needs transformers"):
        from curvlab.track import HFTrainerCallback  # noqa: F401
    with pytest.raises(AttributeError):
        track.NoSuchThing  # noqa: B018


# -- Lightning ----------------------------------------------------------------------------------
def test_lightning_callback_in_a_real_trainer_run(tmp_path):
    L = pytest.importorskip("lightning")
    from curvlab.track import LightningCallback

    model, loss_fn, X, y = mlp_problem(n=32, hidden=4)

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = model

        def training_step(self, batch, batch_idx):
            xb, yb = batch
            return loss_fn(self.net(xb), yb)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.5)

    tracker = CurvatureTracker(model, loss_fn, (X, y), every=2, seed=0)
    cb = LightningCallback(tracker)
    assert isinstance(cb, L.pytorch.Callback)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=16)
    trainer = L.Trainer(
        max_steps=5,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
        callbacks=[cb],
    )
    trainer.fit(Module(), loader)
    assert [r.step for r in tracker.history] == [0, 2, 4]
    # the record at step 4 is the curvature after 4 SGD steps on the same batches
    model2, _, _, _ = mlp_problem(n=32, hidden=4)
    opt = torch.optim.SGD(model2.parameters(), lr=0.5)
    for i in range(4):
        sl = slice(16 * (i % 2), 16 * (i % 2) + 16)
        sgd_step(model2, loss_fn, X[sl], y[sl], opt)
    ref = CurvatureTracker(model2, loss_fn, (X, y), seed=0).record()
    assert tracker.history[-1].top == pytest.approx(ref.top, rel=1e-6)


def test_lightning_callback_without_lightning_raises_import_error(monkeypatch):
    monkeypatch.delitem(vars(track), "LightningCallback", raising=False)
    for name in ("lightning", "lightning.pytorch", "pytorch_lightning"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match="pip install lightning"):
        track.LightningCallback  # noqa: B018


def test_callbacks_check_their_tracker():
    pytest.importorskip("transformers")
    from curvlab.track import HFTrainerCallback

    with pytest.raises(TypeError, match="CurvatureTracker"):
        HFTrainerCallback(object())


def test_record_type_is_exported():
    assert cl.track.CurvatureRecord is CurvatureRecord
    assert "track" in cl.__all__
