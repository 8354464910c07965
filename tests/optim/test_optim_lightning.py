"""curvlab optimizers inside a real ``lightning.Trainer.fit`` (issue 16): manual optimization
and :class:`curvlab.optim.lightning.CurvatureModule` (automatic optimization), step for step
against a plain loop with the same seed."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest
import torch
import torch.nn.functional as F

L = pytest.importorskip("lightning")

from curvlab.optim import AdaHessian, ClosureError, NewtonCG  # noqa: E402
from curvlab.optim.lightning import CurvatureModule, curvature_optimizer_of  # noqa: E402

STEPS = 5
MAKERS = {
    "adahessian": lambda ps: AdaHessian(ps, lr=0.1, seed=0),
    "newtoncg": lambda ps: NewtonCG(ps),
}


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's tips about workers, loggers, pytree
        yield


def data():
    g = torch.Generator().manual_seed(1)
    return torch.randn(32, 4, generator=g), torch.randn(32, 1, generator=g)


def mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))


def loader(X, y):
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=len(X))


def trainer(tmp_path, steps=STEPS, **kwargs):
    return L.Trainer(
        max_steps=steps,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        **kwargs,
    )


def plain_loop(make, steps=STEPS):
    X, y = data()
    net = mlp()
    opt = make(net.parameters())
    losses = [float(opt.step(lambda: F.mse_loss(net(X), y))) for _ in range(steps)]
    return net, losses


class Plain(L.LightningModule):
    """A LightningModule as users write it (automatic optimization, no mixin)."""

    def __init__(self, make):
        super().__init__()
        self.net, self.make, self.losses = mlp(), make, []
        self.calls = self.logged = 0

    def training_step(self, batch, batch_idx):
        self.calls += 1
        loss = F.mse_loss(self.net(batch[0]), batch[1])
        self.log("train_loss", loss)
        return loss

    def log(self, *args, **kwargs):
        self.logged += 1
        super().log(*args, **kwargs)

    def on_train_batch_end(self, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))

    def configure_optimizers(self):
        return self.make(self.parameters())


class Auto(CurvatureModule, Plain):
    """The same module with the mixin."""


class Manual(L.LightningModule):
    """Manual optimization: the closure returns the loss, no backward."""

    def __init__(self, make):
        super().__init__()
        self.automatic_optimization = False
        self.net, self.make, self.losses = mlp(), make, []

    def training_step(self, batch, batch_idx):
        X, y = batch
        loss = self.optimizers().step(lambda: F.mse_loss(self.net(X), y))
        self.losses.append(float(loss))

    def configure_optimizers(self):
        return self.make(self.parameters())


def test_importing_the_adapter_imports_no_lightning():
    code = (
        "import sys, curvlab.optim, curvlab.optim.lightning; "
        "assert 'lightning' not in sys.modules and 'pytorch_lightning' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_automatic_optimization_without_the_mixin_raises_closure_error(tmp_path):
    """Lightning's closure runs backward and returns the loss detached: the optimizer
    cannot take a gradient from it."""
    with pytest.raises(ClosureError, match="does not require grad"):
        trainer(tmp_path, steps=1).fit(Plain(MAKERS["adahessian"]), loader(*data()))


@pytest.mark.parametrize("name", sorted(MAKERS))
@pytest.mark.parametrize("module", [Auto, Manual], ids=["mixin", "manual"])
def test_fit_matches_the_plain_loop(tmp_path, name, module):
    make = MAKERS[name]
    model = module(make)
    tr = trainer(tmp_path)
    tr.fit(model, loader(*data()))
    net, ref = plain_loop(make)
    assert tr.global_step == STEPS
    assert model.losses == pytest.approx(ref, rel=1e-6, abs=1e-7)
    assert model.losses[-1] < 0.95 * model.losses[0]
    for p, q in zip(model.net.parameters(), net.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)
        assert p.grad is not None and p.grad.grad_fn is None and not p.grad.requires_grad


def test_line_search_reevaluations_are_not_logged(tmp_path):
    """NewtonCG re-evaluates the loss in its line search: training_step runs again, but
    self.log only once per step and Lightning reports the loss before the step."""
    model = Auto(MAKERS["newtoncg"])
    trainer(tmp_path).fit(model, loader(*data()))
    assert model.calls > STEPS  # the line search evaluated the loss again
    assert model.logged == STEPS
    _, ref = plain_loop(MAKERS["newtoncg"])
    assert model.losses == pytest.approx(ref, rel=1e-6, abs=1e-7)


def test_mixin_leaves_torch_optimizers_to_lightning(tmp_path):
    make = lambda ps: torch.optim.SGD(ps, lr=0.1)  # noqa: E731
    model = Auto(make)
    trainer(tmp_path).fit(model, loader(*data()))
    X, y = data()
    net = mlp()
    opt = make(net.parameters())
    ref = []
    for _ in range(STEPS):
        opt.zero_grad()
        loss = F.mse_loss(net(X), y)
        loss.backward()
        opt.step()
        ref.append(float(loss))
    assert model.losses == pytest.approx(ref, rel=1e-6)


def test_gradient_clip_val_becomes_max_grad_norm(tmp_path):
    model = Auto(lambda ps: AdaHessian(ps, lr=0.1, seed=0))
    trainer(tmp_path, steps=2, gradient_clip_val=0.05).fit(model, loader(*data()))
    opt = curvature_optimizer_of(model.optimizers())
    assert opt is model.trainer.optimizers[0]  # the optimizer itself, not Lightning's wrapper
    assert opt.max_grad_norm == 0.05
    assert opt.last_grad_norm > 0.05  # so clipping acted on the last step
    norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()]))
    assert float(norm) == pytest.approx(0.05, rel=1e-4)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"accumulate_grad_batches": 2}, "accumulate_grad_batches"),
        ({"gradient_clip_val": 1.0, "gradient_clip_algorithm": "value"}, "norm clipping"),
    ],
)
def test_unsupported_settings_are_refused(tmp_path, kwargs, match):
    X, y = data()
    dl = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=8)
    with pytest.raises(ValueError, match=match):
        trainer(tmp_path, steps=2, **kwargs).fit(Auto(MAKERS["adahessian"]), dl)


def test_tiny_bert_with_the_mixin(tmp_path):
    """The tiny BERT of the transformer tests, trained by AdaHessian through the mixin, as the
    plain loop trains it."""
    pytest.importorskip("transformers")
    from hf_models import tiny_bert

    g = torch.Generator().manual_seed(3)
    ids = torch.randint(1, 40, (8, 10), generator=g)
    labels = torch.randint(0, 3, (8,), generator=g)
    make = lambda ps: AdaHessian(ps, lr=0.05, seed=0)  # noqa: E731

    class Bert(CurvatureModule, L.LightningModule):
        def __init__(self):
            super().__init__()
            self.model, self.losses = tiny_bert(), []

        def training_step(self, batch, batch_idx):
            return self.model(input_ids=batch[0], labels=batch[1]).loss

        def on_train_batch_end(self, outputs, batch, batch_idx):
            self.losses.append(float(outputs["loss"]))

        def configure_optimizers(self):
            return make(self.parameters())

    module = Bert()
    trainer(tmp_path).fit(module, loader(ids, labels))
    model = tiny_bert()
    opt = make(model.parameters())
    ref = [float(opt.step(lambda: model(input_ids=ids, labels=labels).loss)) for _ in range(STEPS)]
    assert module.losses == pytest.approx(ref, rel=1e-5, abs=1e-6)
    assert module.losses[-1] < module.losses[0]


def test_bf16_mixed_precision(tmp_path):
    """precision='bf16-mixed': training_step runs under autocast, the optimizer's arithmetic in
    float32, as the plain loop with autocast in the closure."""
    make = MAKERS["adahessian"]
    model = Auto(make)
    trainer(tmp_path, precision="bf16-mixed").fit(model, loader(*data()))
    X, y = data()
    net = mlp()
    opt = make(net.parameters())

    def closure():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return F.mse_loss(net(X), y)

    ref = [float(opt.step(closure)) for _ in range(STEPS)]
    assert model.losses == pytest.approx(ref, rel=1e-5, abs=1e-6)
    assert model.losses[-1] < model.losses[0]
    assert all(p.grad.dtype == torch.float32 for p in model.parameters())


def test_a_gradient_scaler_is_refused(tmp_path):
    """precision='16-mixed' (a GradScaler) would scale the curvature too. On CPU Lightning
    turns '16-mixed' into bf16, so the plugin is built with a CPU scaler explicitly."""
    from lightning.pytorch.plugins.precision import MixedPrecision

    plugin = MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu"))
    tr = trainer(tmp_path, steps=1, plugins=[plugin])
    with pytest.raises(ValueError, match="16-mixed"):
        tr.fit(Auto(MAKERS["adahessian"]), loader(*data()))
