"""The generic checks of PyTorch's optimizer tests, run over every curvlab optimizer.

Ported (re-written, not copied) from the optimizer-agnostic checks of PyTorch's
``test/test_optim.py`` and ``torch/testing/_internal/common_optimizers.py``: state_dict round
trips (into a fresh optimizer and into a deep copy), deep copies and pickling, weights-only
loading, ``add_param_group``, ``zero_grad``, the step and state-dict hooks, learning-rate
schedulers, the forms ``params`` may take, frozen parameters, zero gradients, tensor
learning rates and invalid hyperparameters. One row of :data:`ROWS` per optimizer (and per
variant with its own code path); where a check does not apply, the row says so and the
check asserts the documented behaviour instead (see :data:`MOVES_ON_ZERO_GRADIENT`).

The problem is torch's: ``loss = ||W x + b||^2`` with ``W`` (10, 5), ``b`` (10,), ``x`` (5,).
"""

from __future__ import annotations

import copy
import io
import math
import pickle
import warnings
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, OneCycleLR, ReduceLROnPlateau, StepLR

from curvlab.optim import (
    SADH,
    SCRN,
    SSDH,
    SSVP,
    AdaHessian,
    Apollo,
    DampedNewton,
    NewtonCG,
    Sophia,
)


@dataclass(frozen=True)
class Row:
    """One optimizer of the table: its class, constructor kwargs and what the checks need."""

    name: str
    cls: type
    kwargs: dict = field(default_factory=dict)
    #: the closure must return (loss, output)
    needs_output: bool = False
    #: kwargs under which the step is linear in lr at a fixed state (scheduler check)
    linear_lr_kwargs: dict = field(default_factory=dict)
    #: kwargs that make the update vanish at a zero gradient (decoupled weight decay off)
    zero_grad_kwargs: dict = field(default_factory=dict)
    #: bad hyperparameters: (kwargs, the name the ValueError must mention)
    invalid: tuple = ()

    def make(self, params, **overrides):
        return self.cls(params, **{**self.kwargs, **overrides})


_BETAS = (({"betas": (1.0, 0.9)}, "betas"), ({"betas": (0.9, -0.1)}, "betas"))
_STEPSIZE_INVALID = (
    *_BETAS,
    ({"rho": 0.0}, "rho"),
    ({"eps": -1.0}, "eps"),
    ({"weight_decay": -1.0}, "weight_decay"),
    ({"update_each": 0}, "update_each"),
)

ROWS = [
    Row(
        "AdaHessian",
        AdaHessian,
        invalid=(
            ({"eps": -1e-4}, "eps"),
            ({"weight_decay": -0.1}, "weight_decay"),
            *_BETAS,
            ({"hessian_power": 1.5}, "hessian_power"),
            ({"hessian_power": -0.5}, "hessian_power"),
            ({"n_samples": 0}, "n_samples"),
        ),
    ),
    Row(
        "Sophia-H",
        Sophia,
        {"update_each": 2},
        zero_grad_kwargs={"weight_decay": 0.0},
        invalid=(*_STEPSIZE_INVALID[:3], ({"eps": 0.0}, "eps"), ({"weight_decay": -1.0}, "wei")),
    ),
    Row(
        "Sophia-G",
        Sophia,
        {"update_each": 2, "estimator": "gnb"},
        needs_output=True,
        zero_grad_kwargs={"weight_decay": 0.0},
        invalid=(({"estimator": "fisher"}, "estimator"),),
    ),
    Row(
        "SCRN",
        SCRN,
        {"l": 20.0},
        invalid=(
            ({"rho": 0.0}, "rho"),
            ({"l": -1.0}, "l"),
            ({"eps": -1.0}, "eps"),
            ({"inner_steps": -1}, "inner_steps"),
            ({"subsolver": "newton"}, "subsolver"),
        ),
    ),
    Row("SCRN-lanczos", SCRN, {"l": 20.0, "subsolver": "lanczos"}),
    Row(
        "DampedNewton",
        DampedNewton,
        {"variant": "fixed", "damping": 1.0},
        invalid=(
            ({"damping": -1.0}, "damping"),
            ({"L": -1.0}, "L"),
            ({"cg_tol": 0.0}, "cg_tol"),
            ({"variant": "newton"}, "variant"),
        ),
    ),
    Row("DampedNewton-dense", DampedNewton, {"variant": "gradreg", "solver": "dense"}),
    Row(
        "NewtonCG",
        NewtonCG,
        {"damping": 1.0},
        # the Armijo backtracking makes the accepted step depend on lr non-linearly
        linear_lr_kwargs={"line_search": False},
        invalid=(
            ({"damping": -1.0}, "damping"),
            ({"cg_tol": 0.0}, "cg_tol"),
            ({"cg_max_iter": 0}, "cg_max_iter"),
            ({"armijo_c": -1.0}, "armijo_c"),
        ),
    ),
    Row(
        "NewtonCG-ggn",
        NewtonCG,
        {"damping": 1.0, "curvature": "ggn"},
        needs_output=True,
        linear_lr_kwargs={"line_search": False},
    ),
    Row(
        "Apollo",
        Apollo,
        {"lr": 0.01, "warmup": 5},
        invalid=(
            ({"beta": 1.0}, "beta"),
            ({"eps": -1.0}, "eps"),
            ({"weight_decay": -1.0}, "weight_decay"),
            ({"warmup": -1}, "warmup"),
            ({"sigma": -1.0}, "sigma"),
        ),
    ),
    Row("SSDH", SSDH, {"update_each": 2}, invalid=_STEPSIZE_INVALID),
    Row("SADH", SADH, {"update_each": 2}, invalid=_STEPSIZE_INVALID),
    Row("SSVP", SSVP, {"update_each": 2}, invalid=_STEPSIZE_INVALID),
]
IDS = [r.name for r in ROWS]

#: rows whose step is not zero at a zero gradient, by design, and why
MOVES_ON_ZERO_GRADIENT = {
    "SCRN": "SCRN perturbs the gradient (uniformly on a sphere) when ||g|| < l^2/rho, to escape "
    "saddle points (Tripuraneni et al. 2018, Algorithm 2): it moves at a stationary point",
    "SCRN-lanczos": "the Lanczos subsolver starts from the same perturbed gradient",
}


# -- the problem ------------------------------------------------------------------------------


def make_params(seed: int = 0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    weight = torch.randn(10, 5, generator=g, dtype=dtype).requires_grad_()
    bias = torch.randn(10, generator=g, dtype=dtype).requires_grad_()
    x = torch.randn(5, generator=g, dtype=dtype)
    return weight, bias, x


def closure_for(row: Row, weight, bias, x):
    def closure():
        y = weight.mv(x) + bias
        loss = y.pow(2).sum()
        return (loss, y) if row.needs_output else loss

    return closure


def params_of(opt) -> list[torch.Tensor]:
    return [p for g in opt.param_groups for p in g["params"]]


def closure_of(row: Row, opt, x):
    """The closure of ``opt``'s own parameters (after a deep copy, those of the copy)."""
    weight, bias = params_of(opt)
    return closure_for(row, weight, bias, x)


def assert_same_tensors(a, b):
    assert len(a) == len(b)
    for s, t in zip(a, b):
        assert torch.equal(s, t), (s, t)


def assert_equal_nested(a: Any, b: Any):
    """Exact equality of nested state (dicts, lists, tensors, numbers)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), (a.keys(), b.keys())
        for k in a:
            assert_equal_nested(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for s, t in zip(a, b):
            assert_equal_nested(s, t)
    else:
        assert a == b or (a != a and b != b), (a, b)  # NaN == NaN here


def run(opt, closure, steps):
    losses = []
    for _ in range(steps):
        losses.append(opt.step(closure))
    return losses


# -- state_dict, deepcopy, pickling -------------------------------------------------------------


@pytest.mark.parametrize("row", ROWS, ids=IDS)
def test_state_dict_round_trip_into_a_fresh_optimizer(row):
    """Prime, load the state into a fresh optimizer on cloned parameters, continue in
    lockstep: identical parameters; loading does not modify the dict; the two state_dicts
    are equal at the end."""
    w, b, x = make_params()
    opt = row.make([w, b])
    run(opt, closure_for(row, w, b, x), 4)
    wc = w.detach().clone().requires_grad_()
    bc = b.detach().clone().requires_grad_()
    opt_c = row.make([wc, bc])
    sd = copy.deepcopy(opt.state_dict())
    sd_c = copy.deepcopy(opt.state_dict())
    opt_c.load_state_dict(sd_c)
    assert_equal_nested(sd, sd_c)  # loading does not modify the dict it is given
    for _ in range(4):
        opt.step(closure_for(row, w, b, x))
        opt_c.step(closure_for(row, wc, bc, x))
        assert_same_tensors([w, b], [wc, bc])
    assert_equal_nested(opt.state_dict(), opt_c.state_dict())


@pytest.mark.parametrize("row", ROWS, ids=IDS)
def test_state_dict_round_trip_into_a_deep_copy(row):
    """torch's check: a state_dict loads into a deep copy of the optimizer (with its own
    parameters) and both continue identically."""
    w, b, x = make_params()
    opt = row.make([w, b])
    run(opt, closure_for(row, w, b, x), 3)
    sd = copy.deepcopy(opt.state_dict())
    twin = copy.deepcopy(opt)
    run(opt, closure_for(row, w, b, x), 2)  # the original moves on ...
    twin.load_state_dict(copy.deepcopy(opt.state_dict()))  # ... the twin catches up by state
    for p, q in zip(params_of(twin), [w, b]):
        with torch.no_grad():
            p.copy_(q)
    for _ in range(3):
        opt.step(closure_for(row, w, b, x))
        twin.step(closure_of(row, twin, x))
    assert_same_tensors([w, b], params_of(twin))
    assert sd["curvlab"]["num_steps"] == 3


@pytest.mark.parametrize("row", ROWS, ids=IDS)
def test_deepcopy_steps_bit_for_bit_as_the_original(row):
    """copy.deepcopy(opt) keeps every attribute a step needs (counters, seed, the probe
    generator's state): the copy and the original take the same steps, bit for bit."""
    w, b, x = make_params()
    opt = row.make([w, b])
    run(opt, closure_for(row, w, b, x), 3)
    twin = copy.deepcopy(opt)
    assert twin._generator is not opt._generator
    assert torch.equal(twin._generator.get_state(), opt._generator.get_state())
    assert twin.num_steps == opt.num_steps == 3
    assert {k for k in vars(opt) if not k.startswith("_")} == {
        k for k in vars(twin) if not k.startswith("_")
    }
    la = run(opt, closure_for(row, w, b, x), 5)
    lb = run(twin, closure_of(row, twin, x), 5)
    assert_same_tensors([w, b], params_of(twin))
    assert_same_tensors(la, lb)
    assert_equal_nested(opt.state_dict(), twin.state_dict())
    assert opt.counts == twin.counts


@pytest.mark.parametrize("row", ROWS, ids=IDS)
def test_torch_save_and_load_of_the_optimizer_steps_as_the_original(row):
    w, b, x = make_params()
    opt = row.make([w, b])
    run(opt, closure_for(row, w, b, x), 3)
    buf = io.BytesIO()
    torch.save(opt, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    la = run(opt, closure_for(row, w, b, x), 4)
    lb = run(loaded, closure_of(row, loaded, x), 4)
    assert_same_tensors([w, b], params_of(loaded))
    assert_same_tensors(la, lb)


@pytest.mark.parametrize("row", ROWS, ids=IDS)
def test_weights_only_load_of_a_state_dict(row):
    """torch.save(opt.state_dict()) loads with torch.load(weights_only=True) (no pickled
    objects in it) and resumes bit for bit."""
    w, b, x = make_params()
    opt = row.make([w, b])
    run(opt, closure_for(row, w, b, x), 3)
    buf = io.BytesIO()
    torch.save(opt.state_dict(), buf)
    buf.seek(0)
    sd = torch.load(buf, weights_only=True)
    wc = w.detach().clone().requires_grad_()
    bc = b.detach().clone().requires_grad_()
    opt_c = row.make([wc, bc])
    opt_c.load_state_dict(sd)
    run(opt, closure_for(row, w, b, x), 3)
    run(opt_c, closure_for(row, wc, bc, x), 3)
    assert_same_tensors([w, b], [wc, bc])


def test_deepcopy_shares_the_process_group_and_pickling_drops_it_with_a_clear_error():
    w, b, x = make_params()
    row = ROWS[0]
    opt = row.make([w, b])
    group = object()  # a stand-in: a process group can be neither copied nor pickled
    opt.process_group = group
    assert copy.deepcopy(opt).process_group is group
    with pytest.warns(UserWarning, match="process_group"):
        blob = pickle.dumps(opt)
    loaded = pickle.loads(blob)
    assert loaded.process_group is None
    with pytest.raises(RuntimeError, match="process_group"):
        loaded.step(closure_of(row, loaded, x))
    loaded.process_group = None  # single-process from here on
    assert torch.isfinite(loaded.step(closure_of(row, loaded, x)))
    opt.process_group = None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pickle.dumps(opt)  # no group, no warning


# -- param groups, zero_grad, hooks, printing ---------------------------------------------------


@pytest.mark.parametrize("row", ROWS, ids=IDS)
def test_add_param_group(row):
    w, b, x = make_params()
    opt = row.make([w])
    opt.step(closure_for(row, w, b, x))
    b0 = b.detach().clone()
    assert torch.equal(b, b0)
    with pytest.raises(ValueError, match="lr"):
        opt.add_param_group({"params": [b], "lr": -1.0})
    assert len(opt.param_groups) == 1  # the bad group was not added
    opt.add_param_group({"params": [b]})
    assert len(opt.param_groups) == 2
    for key, value in opt.defaults.items():
        if not isinstance(value, torch.Tensor):
            assert opt.param_groups[1][key] == value
    opt.step(closure_for(row, w, b, x))
    assert not torch.equal(b, b0)
    assert len(opt.state[b]) > 0 or row.cls in (SCRN, DampedNewton, NewtonCG)


@pytest.mark.parametrize("row", ROWS, ids=IDS)
@pytest.mark.parametrize("set_to_none", [True, False])
def test_zero_grad(row, set_to_none):
    w, b, x = make_params()
    opt = row.make([w, b])
    opt.step(closure_for(row, w, b, x))
    assert w.grad is not None and w.grad.grad_fn is None and bool(w.grad.abs().sum() > 0)
    opt.zero_grad(set_to_none=set_to_none)
    if set_to_none:
        assert w.grad is None and b.grad is None
    else:
        assert torch.equal(w.grad, torch.zeros_like(w)) and torch.equal(b.grad, torch.zeros(10))


@pytest.mark.parametrize("row", ROWS, ids=IDS)
def test_step_pre_and_post_hooks(row):
    w, b, x = make_params()
    opt = row.make([w, b])
    calls = []

    def pre(o, args, kwargs):
        assert o is opt
        calls.append(("pre", w.detach().clone()))

    def post(o, args, kwargs):
        calls.append(("post", w.detach().clone()))

    h1 = opt.register_step_pre_hook(pre)
    h2 = opt.register_step_post_hook(post)
    opt.step(closure_for(row, w, b, x))
    opt.step(closure_for(row, w, b, x))
    assert [c[0] for c in calls] == ["pre", "post", "pre", "post"]
    assert not torch.equal(calls[0][1], calls[1][1])  # post sees the updated weight
    assert torch.equal(calls[1][1], calls[2][1])
    h1.remove()
    h2.remove()
    opt.step(closure_for(row, w, b, x))
    assert len(calls) == 4


@pytest.mark.parametrize("row", ROWS, ids=IDS)
def test_state_dict_hooks(row):
    w, b, x = make_params()
    opt = row.make([w, b])
    opt.step(closure_for(row, w, b, x))
    seen = []
    opt.register_state_dict_pre_hook(lambda o: seen.append("sd_pre"))

    def sd_post(o, sd):
        seen.append("sd_post")
        sd["user"] = 7
        return sd

    opt.register_state_dict_post_hook(sd_post)
    sd = opt.state_dict()
    assert sd["user"] == 7 and "curvlab" in sd
    assert seen == ["sd_pre", "sd_post"]

    wc, bc = (t.detach().clone().requires_grad_() for t in (w, b))
    opt_c = row.make([wc, bc])

    def load_pre(o, state_dict):
        seen.append("load_pre")
        state_dict = dict(state_dict)
        state_dict.pop("user")
        return state_dict

    opt_c.register_load_state_dict_pre_hook(load_pre)
    opt_c.register_load_state_dict_post_hook(lambda o: seen.append("load_post"))
    opt_c.load_state_dict(copy.deepcopy(sd))  # (loaded tensors are shared, as in torch)
    assert seen[2:] == ["load_pre", "load_post"]
    assert opt_c.num_steps == 1
    opt.step(closure_for(row, w, b, x))
    opt_c.step(closure_for(row, wc, bc, x))
    assert_same_tensors([w, b], [wc, bc])


@pytest.mark.parametrize("row", ROWS, ids=IDS)
def test_optimizer_can_be_printed(row):
    w, b, _ = make_params()
    text = repr(row.make([w, b]))
    assert row.cls.__name__ in text and "lr" in text


# -- learning-rate schedulers -------------------------------------------------------------------

LR0 = 0.01


def _schedulers():
    # (name, constructor, expected lr before step t, or None where only "it changes" is checked)
    return [
        ("StepLR", lambda o: StepLR(o, step_size=2, gamma=0.5), lambda t: LR0 * 0.5 ** (t // 2)),
        (
            "CosineAnnealingLR",
            lambda o: CosineAnnealingLR(o, T_max=6),
            lambda t: LR0 * (1 + math.cos(math.pi * t / 6)) / 2,
        ),
        (  # it cycles betas[0] too where there are betas (momentum-free methods: lr only)
            "OneCycleLR",
            lambda o: OneCycleLR(
                o, max_lr=LR0, total_steps=8, cycle_momentum="betas" in o.defaults
            ),
            None,
        ),
        # constant metric: the first value is the best, every later one a plateau (patience 0)
        (
            "ReduceLROnPlateau",
            lambda o: ReduceLROnPlateau(o, factor=0.5, patience=0),
            lambda t: LR0 * 0.5 ** max(t - 1, 0),
        ),
    ]


@pytest.mark.parametrize("row", ROWS, ids=IDS)
@pytest.mark.parametrize("sched_name, make_sched, expected", _schedulers(), ids=lambda v: None)
def test_lr_schedulers_change_the_effective_step(row, sched_name, make_sched, expected):
    """Before each step, a bit-for-bit copy of the optimizer steps with the constructor's lr:
    the scheduled step is that step scaled by lr_t / lr0 (the step is linear in lr at a
    fixed state), and lr_t follows the scheduler's closed form."""
    w, b, x = make_params()
    kw = {**row.linear_lr_kwargs, "lr": LR0}
    if row.cls is Sophia:
        kw["weight_decay"] = 0.0  # p(1 - lr wd) is affine in lr: compare the pure step
    opt = row.make([w, b], **kw)
    sched = make_sched(opt)
    lrs = []
    for t in range(6):
        lr_t = opt.param_groups[0]["lr"]
        lrs.append(lr_t)
        if expected is not None:
            assert lr_t == pytest.approx(expected(t), rel=1e-12), (t, lr_t)
        ref = copy.deepcopy(opt)
        for g in ref.param_groups:
            g["lr"] = LR0
        before = [p.detach().clone() for p in (w, b)]
        loss = opt.step(closure_for(row, w, b, x))
        ref.step(closure_of(row, ref, x))
        for p, q, p0 in zip((w, b), params_of(ref), before):
            torch.testing.assert_close(p - p0, (q - p0) * (lr_t / LR0), rtol=1e-4, atol=1e-6)
        if isinstance(sched, ReduceLROnPlateau):
            sched.step(1.0)
        else:
            sched.step()
        del loss
    assert len(set(lrs)) > 2  # the scheduler did change the step size


# -- the forms of params ------------------------------------------------------------------------


@pytest.mark.parametrize("row", ROWS, ids=IDS)
def test_params_as_a_generator_as_named_parameters_and_as_dicts(row):
    """A list, a generator (model.parameters()) and named_parameters() give the same steps;
    dicts carry per-group hyperparameters (a group with lr=0 does not move)."""
    finals = []
    for form in ("list", "generator", "named"):
        model = torch.nn.Linear(5, 10)
        with torch.no_grad():
            w, b, x = make_params()
            model.weight.copy_(w)
            model.bias.copy_(b)
        params = {
            "list": list(model.parameters()),
            "generator": model.parameters(),
            "named": model.named_parameters(),
        }[form]
        opt = row.make(params)
        if form == "named":
            assert opt.param_groups[0]["param_names"] == ["weight", "bias"]
            assert opt.state_dict()["param_groups"][0]["param_names"] == ["weight", "bias"]
        run(opt, closure_for(row, model.weight, model.bias, x), 3)
        finals.append([model.weight.detach().clone(), model.bias.detach().clone()])
    assert_same_tensors(finals[0], finals[1])
    assert_same_tensors(finals[0], finals[2])

    w, b, x = make_params()
    b0 = b.detach().clone()
    opt = row.make([{"params": [w]}, {"params": [b], "lr": 0.0}])
    run(opt, closure_for(row, w, b, x), 3)
    torch.testing.assert_close(b.detach(), b0, rtol=0, atol=0)
    assert not torch.equal(w.detach(), make_params()[0].detach())


# -- frozen parameters, zero gradients ----------------------------------------------------------


@pytest.mark.parametrize("row", ROWS, ids=IDS)
def test_frozen_parameters_are_left_alone(row):
    w, b, x = make_params()
    b.requires_grad_(False)
    b0 = b.clone()
    opt = row.make([w, b])
    run(opt, closure_for(row, w, b, x), 3)
    assert torch.equal(b, b0) and b.grad is None and b not in opt.state
    assert not torch.equal(w.detach(), make_params()[0].detach())


@pytest.mark.parametrize("row", ROWS, ids=IDS)
def test_step_is_a_no_op_when_no_parameter_requires_grad(row):
    """A frozen block: torch's optimizers evaluate the closure and change nothing."""
    w, b, x = make_params()
    w.requires_grad_(False)
    b.requires_grad_(False)
    w0, b0 = w.clone(), b.clone()
    opt = row.make([w, b])
    expected = float((w.mv(x) + b).pow(2).sum())
    loss = opt.step(closure_for(row, w, b, x))
    assert float(loss) == expected
    assert torch.equal(w, w0) and torch.equal(b, b0)
    assert len(opt.state) == 0 and opt.num_steps == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no legacy-path warning either: nothing to step
        assert opt.step() is None
    assert torch.equal(w, w0) and opt.num_steps == 0


@pytest.mark.parametrize("row", ROWS, ids=IDS)
def test_step_at_a_zero_gradient(row):
    """At a stationary point (zero gradient, positive curvature) the step is zero, except
    where the method perturbs by design (then it moves, by a seeded, reproducible amount)."""
    finals = []
    for _ in range(2):
        w, b, x = make_params()
        w0, b0 = w.detach().clone(), b.detach().clone()
        opt = row.make([w, b], **row.zero_grad_kwargs)

        y0 = (w.mv(x) + b).detach()

        def closure(w=w, b=b, x=x, w0=w0, b0=b0, y0=y0):
            if row.needs_output:  # through the output (the Gauss-Newton products need it)
                y = w.mv(x) + b
                return (y - y0).pow(2).sum(), y
            return (w - w0).pow(2).sum() + (b - b0).pow(2).sum()

        opt.step(closure)
        assert torch.equal(w.grad, torch.zeros_like(w))
        moved = float((w.detach() - w0).norm() + (b.detach() - b0).norm())
        finals.append(w.detach().clone())
        if row.name in MOVES_ON_ZERO_GRADIENT:
            assert moved > 0, MOVES_ON_ZERO_GRADIENT[row.name]
        else:
            assert moved == 0.0
    assert torch.equal(finals[0], finals[1])


# -- tensor lr, invalid hyperparameters ---------------------------------------------------------


@pytest.mark.parametrize("row", ROWS, ids=IDS)
def test_tensor_lr_steps_as_the_float_lr(row):
    """lr=torch.tensor(...) is accepted and gives the float lr's steps (float64 problem: a
    float32 tensor lr would round the value); a scheduler updates it in place."""
    results = []
    for lr in (0.01, torch.tensor(0.01, dtype=torch.float64)):
        w, b, x = make_params(dtype=torch.float64)
        opt = row.make([w, b], lr=lr)
        run(opt, closure_for(row, w, b, x), 3)
        results.append([w.detach().clone(), b.detach().clone()])
    for a, c in zip(*results):
        torch.testing.assert_close(a, c, rtol=1e-12, atol=1e-14)
    t = torch.tensor(0.01)
    opt = row.make([make_params()[0]], lr=t)
    StepLR(opt, step_size=1, gamma=0.5).step()
    assert opt.param_groups[0]["lr"] is t and float(t) == pytest.approx(0.005)
    with pytest.raises(ValueError, match="lr"):
        row.make([make_params()[0]], lr=torch.tensor([0.1, 0.2]))


@pytest.mark.parametrize("row", ROWS, ids=IDS)
def test_invalid_hyperparameters_raise_value_error_before_params_are_looked_at(row):
    cases = [({"lr": -0.01}, "lr"), ({"lr": float("nan")}, "lr"), *row.invalid]
    for kwargs, name in cases:
        for params in ([make_params()[0]], [], None):
            with pytest.raises(ValueError, match=name):
                row.make(params, **kwargs)
    with pytest.raises(TypeError, match="lr"):
        row.make([make_params()[0]], lr="0.1")
    # valid hyperparameters with bad params: torch's own errors
    with pytest.raises(TypeError):
        row.make(None)
    with pytest.raises(ValueError, match="empty"):
        row.make([])


# -- curvature steps through fused attention -------------------------------------------------------
class _FusedAttention(torch.nn.Module):
    """F.scaled_dot_product_attention on (B, heads, T, d): a fused CPU kernel by default, which
    has neither a double backward nor a forward derivative."""

    def __init__(self):
        super().__init__()
        self.qkv = torch.nn.Linear(4, 12)
        self.out = torch.nn.Linear(4, 3)

    def forward(self, x):
        B, T, _ = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, 2, 2).permute(2, 0, 3, 1, 4).unbind(0)
        h = torch.nn.functional.scaled_dot_product_attention(q, k, v)
        return self.out(h.transpose(1, 2).reshape(B, T, 4).mean(1))


@pytest.mark.parametrize("row", ROWS, ids=IDS)
def test_curvature_steps_run_through_fused_attention(row):
    """The optimizers' curvature passes select the math attention backend, as the operators do:
    the same step under an explicit math backend gives the same parameters."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    g = torch.Generator().manual_seed(0)
    X = torch.randn(6, 5, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (6,), generator=g)
    results = []
    for explicit in (False, True):
        torch.manual_seed(0)
        model = _FusedAttention().double()
        opt = row.make(model.parameters(), seed=0) if "seed" in _signature(row.cls) else (
            row.make(model.parameters())
        )

        def closure(model=model):
            out = model(X)
            loss = torch.nn.functional.cross_entropy(out, y)
            return (loss, out) if row.needs_output else loss

        for _ in range(2):
            if explicit:
                with sdpa_kernel(SDPBackend.MATH):
                    opt.step(closure)
            else:
                opt.step(closure)
        results.append([p.detach().clone() for p in model.parameters()])
    for a, b in zip(*results):
        assert torch.isfinite(a).all()
        # steps without curvature run the fused kernel in one run and the math one in the
        # other: rounding differences, amplified by the step-size adaptation, stay far below
        # what a wrong curvature would do
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-9)


def _signature(cls) -> set[str]:
    import inspect

    return set(inspect.signature(cls.__init__).parameters)


@pytest.mark.parametrize("row", ROWS, ids=IDS)
def test_closure_less_step_without_any_gradient_warns_every_time(row):
    """torch.optim skips parameters without a gradient; when none has one (a forgotten
    backward) curvlab's optimizers say so on every such step, and change nothing."""
    from curvlab.optim import ClosureError, NoGradientWarning

    weight, bias, _ = make_params()
    opt = row.make([weight, bias])
    before = [weight.detach().clone(), bias.detach().clone()]
    if row.needs_output or opt.requires_closure:  # these refuse a closure-less step at once
        with pytest.raises(ClosureError, match="closure"):
            opt.step()
        return
    for _ in range(2):
        with pytest.warns(NoGradientWarning, match="no gradient"):
            opt.step()
    assert torch.equal(weight, before[0]) and torch.equal(bias, before[1])
