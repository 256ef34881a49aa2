"""Learning-rate strategies: values at step 0, at the end of warm-up, at the peak and the end."""

import math

import pytest

from engine.schedules import Schedule, lr_at, lr_curve

TOTAL = 1000


def test_constant_is_flat():
    s = Schedule("constant", base_lr=0.05)
    assert lr_curve(TOTAL, s) == [0.05] * TOTAL


def test_step_decay_halves_every_step_every():
    s = Schedule("step", base_lr=0.05, step_every=100, gamma=0.5)
    assert lr_at(0, TOTAL, s) == 0.05
    assert lr_at(99, TOTAL, s) == 0.05
    assert lr_at(100, TOTAL, s) == 0.025
    assert lr_at(TOTAL - 1, TOTAL, s) == pytest.approx(0.05 * 0.5**9)


def test_cosine_starts_at_base_and_ends_at_min():
    s = Schedule("cosine", base_lr=0.1, min_lr=0.001)
    assert lr_at(0, TOTAL, s) == pytest.approx(0.1)
    assert lr_at(TOTAL // 2, TOTAL, s) == pytest.approx((0.1 + 0.001) / 2)
    assert lr_at(TOTAL - 1, TOTAL, s) == pytest.approx(0.001, abs=1e-5)
    lrs = lr_curve(TOTAL, s)
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))  # never rises


def test_cyclical_triangle_between_bounds():
    s = Schedule("cyclical", base_lr=0.005, max_lr=0.1, cycle_steps=200)
    assert lr_at(0, TOTAL, s) == pytest.approx(0.005)
    assert lr_at(100, TOTAL, s) == pytest.approx(0.1)  # peak at half a cycle
    assert lr_at(200, TOTAL, s) == pytest.approx(0.005)  # back at the start of cycle 2
    assert lr_at(50, TOTAL, s) == pytest.approx((0.005 + 0.1) / 2)
    assert min(lr_curve(TOTAL, s)) >= 0.005 - 1e-12
    assert max(lr_curve(TOTAL, s)) <= 0.1 + 1e-12


def test_onecycle_rises_to_peak_then_anneals():
    s = Schedule("onecycle", base_lr=0.01, max_lr=0.4, pct_start=0.2, div_factor=25, final_div=1e4)
    assert lr_at(0, TOTAL, s) == pytest.approx(0.4 / 25)
    assert lr_at(200, TOTAL, s) == pytest.approx(0.4)
    assert lr_at(TOTAL, TOTAL, s) == pytest.approx(0.4 / 25 / 1e4)
    lrs = lr_curve(TOTAL, s)
    assert max(lrs) == pytest.approx(0.4)
    assert lrs.index(max(lrs)) == 200


@pytest.mark.parametrize("kind", ["constant", "step", "cosine"])
def test_warmup_ramps_linearly_into_the_schedule(kind):
    s = Schedule(kind, base_lr=0.1, step_every=500, warmup_steps=100)
    plain = Schedule(kind, base_lr=0.1, step_every=500)
    assert lr_at(0, TOTAL, s) == pytest.approx(lr_at(0, TOTAL, plain) / 100)
    assert lr_at(99, TOTAL, s) == pytest.approx(lr_at(99, TOTAL, plain))  # end of warm-up
    assert lr_at(100, TOTAL, s) == lr_at(100, TOTAL, plain)
    assert lr_at(TOTAL - 1, TOTAL, s) == lr_at(TOTAL - 1, TOTAL, plain)


def test_every_schedule_is_finite_and_positive():
    for s in (
        Schedule("step", base_lr=0.05, step_every=10),
        Schedule("cyclical", base_lr=0.001, max_lr=0.1, cycle_steps=7),
        Schedule("onecycle", base_lr=0.01, max_lr=0.1),
    ):
        assert all(math.isfinite(v) and v > 0 for v in lr_curve(TOTAL, s))


def test_bad_schedules_are_refused():
    with pytest.raises(ValueError, match="choose one of"):
        Schedule("exponential")
    with pytest.raises(ValueError, match="max_lr"):
        Schedule("onecycle", base_lr=0.1)
