"""curvlab._random: the one seed policy (int / None / Generator, share=False / True)."""

import numpy as np
import pytest
import torch

from curvlab._random import check_seed, draw_seed, fresh_seed, make_generator


def draws(gen, k=4):
    return torch.rand(k, generator=gen, dtype=torch.float64)


def test_int_seed_is_torch_manual_seed():
    gen, s = make_generator(7)
    assert s == 7
    assert torch.equal(draws(gen), draws(torch.Generator().manual_seed(7)))


@pytest.mark.parametrize("share", [False, True])
def test_int_seed_reproducible_and_distinct(share):
    a, _ = make_generator(5, share=share)
    b, _ = make_generator(5, share=share)
    c, _ = make_generator(6, share=share)
    x = draws(a)
    assert torch.equal(x, draws(b))
    assert not torch.equal(x, draws(c))


def test_numpy_integer_seed_accepted():
    gen, s = make_generator(np.int64(3))
    assert s == 3 and isinstance(s, int)
    assert torch.equal(draws(gen), draws(torch.Generator().manual_seed(3)))


def test_none_gives_fresh_reproducible_seeds():
    g1, s1 = make_generator(None)
    g2, s2 = make_generator(None)
    assert isinstance(s1, int) and 0 <= s1 < 2**62
    assert s1 != s2  # 62 random bits: a collision is practically impossible
    assert torch.equal(draws(g1), draws(make_generator(s1)[0]))


def test_none_does_not_touch_global_rng():
    state = torch.get_rng_state()
    make_generator(None)
    fresh_seed()
    assert torch.equal(state, torch.get_rng_state())


def test_generator_not_shared_draws_one_integer():
    user = torch.Generator().manual_seed(0)
    gen, s = make_generator(user, share=False)
    assert gen is not user
    ref = torch.Generator().manual_seed(0)
    expected = int(torch.randint(0, 2**62, (1,), generator=ref).item())
    assert s == expected
    # the user's generator advanced by exactly that one draw
    assert torch.equal(draws(user), draws(ref))
    # the returned integer reproduces the new generator
    assert torch.equal(draws(gen), draws(make_generator(s)[0]))


def test_generator_not_shared_same_state_same_result():
    a, sa = make_generator(torch.Generator().manual_seed(1))
    b, sb = make_generator(torch.Generator().manual_seed(1))
    assert sa == sb and torch.equal(draws(a), draws(b))


def test_generator_shared_is_used_as_is():
    user = torch.Generator().manual_seed(2)
    gen, s = make_generator(user, share=True)
    assert gen is user and s is None
    x = draws(gen)
    assert not torch.equal(x, draws(user))  # one stream, advancing across calls
    assert torch.equal(x, draws(torch.Generator().manual_seed(2)))


def test_draw_seed_range_and_advance():
    g = torch.Generator().manual_seed(4)
    s1, s2 = draw_seed(g), draw_seed(g)
    assert 0 <= s1 < 2**62 and 0 <= s2 < 2**62 and s1 != s2


def test_device_argument():
    gen, _ = make_generator(0, "cpu")
    assert gen.device == torch.device("cpu")


@pytest.mark.parametrize("bad", ["1", 1.0, True, [1], object()])
def test_bad_seed_types(bad):
    with pytest.raises(TypeError, match="seed must be an int, a torch.Generator or None"):
        check_seed(bad)
    with pytest.raises(TypeError, match="seed"):
        make_generator(bad)


def test_negative_seed():
    with pytest.raises(ValueError, match="non-negative"):
        make_generator(-1)


def test_fresh_seed_range():
    seeds = {fresh_seed() for _ in range(20)}
    assert all(0 <= s < 2**62 for s in seeds) and len(seeds) == 20


def test_rademacher_like_is_one_flat_draw_split_over_the_parameters():
    from curvlab._random import rademacher_like

    like = [torch.empty(2, 3), torch.empty(4, dtype=torch.float64)]
    zs = rademacher_like(like, torch.Generator().manual_seed(3))
    assert [z.shape for z in zs] == [(2, 3), (4,)] and zs[1].dtype == torch.float64
    flat = torch.randint(0, 2, (10,), generator=torch.Generator().manual_seed(3), dtype=torch.int8)
    expected = flat.double() * 2 - 1  # +-1 from the same stream, in parameter order
    assert torch.equal(torch.cat([zs[0].reshape(-1).double(), zs[1]]), expected)
    batched = rademacher_like(like, torch.Generator().manual_seed(3), num=5)
    assert [z.shape for z in batched] == [(5, 2, 3), (5, 4)]
    big = rademacher_like([torch.empty(20000)], torch.Generator().manual_seed(0))[0]
    assert set(big.unique().tolist()) == {-1.0, 1.0}
    assert abs(float(big.mean())) < 0.03  # 5 standard errors of a fair coin


def test_randn_flat_follows_the_generator_and_the_dtype_of_like():
    from curvlab._random import randn_flat

    z = randn_flat(4, torch.Generator().manual_seed(2), torch.zeros(1, dtype=torch.float64))
    ref = torch.randn(4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert z.dtype == torch.float64 and torch.equal(z, ref)
