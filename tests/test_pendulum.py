"""The pendulum of seed 003: direct explicit Euler vs the LTI-plus-Δ form, the slide's errata, and
the data generator."""

import numpy as np
import pytest

from deqlab.errors import ConfigError
from deqlab.models.pendulum import (PendulumParams, delta, lti_plus_delta, simulate_direct, simulate_lti,
                                    slide_matrices)
from deqlab.sysid.data import pendulum_dataset, split_by_trajectory, torque_signals

#: LTI-plus-Δ vs direct simulation, max |difference| relative to max |state| over long runs
#: (the two differ only in the rounding of (gδ/l)(φ − Δ(φ)) vs (gδ/l) sin φ).
MACHINE_TOL = 1e-13
#: a wrong model must miss the direct simulation by at least this much (rad or rad/s)
WRONG_MIN_ERROR = 1e-2

#: damped pendulums: rounding differences are not amplified over long runs
DAMPED = [PendulumParams(), PendulumParams(dt=0.02, m=2.0, l=0.5, mu=2.0, g=3.7)]
#: a lightly damped one, driven over the top: trajectories are sensitive to rounding, so only the
#: one-step map can agree to machine precision (long runs drift apart like any two roundings would)
LIGHT = PendulumParams(dt=0.005, m=0.5, l=2.0, mu=0.1, g=9.81)
#: one step from the same state: |difference| per unit of max(1, |state|)
ONE_STEP_TOL = 8 * np.finfo(float).eps


@pytest.mark.parametrize("p", [*DAMPED, LIGHT])
def test_one_step_maps_agree_to_rounding(p):
    rng = np.random.default_rng(2)
    x0 = np.stack([rng.uniform(-20, 20, 5000), rng.normal(0, 5, 5000)], axis=1)
    u = rng.normal(0, 10, (5000, 1, 1))
    _, x_d = simulate_direct(p, x0, u)
    _, x_l = simulate_lti(lti_plus_delta(p), x0, u)
    scale = np.maximum(1.0, np.abs(x0).max(axis=1, keepdims=True))
    assert (np.abs(x_d[:, 1] - x_l[:, 1]) / scale).max() <= ONE_STEP_TOL


@pytest.mark.parametrize("p", DAMPED)
def test_lti_plus_delta_reproduces_direct_simulation(p):
    rng = np.random.default_rng(0)
    x0 = np.stack([rng.uniform(-np.pi, np.pi, 16), rng.normal(0, 2, 16)], axis=1)
    u = rng.normal(0, 3, (16, 20000, 1))
    y_d, x_d = simulate_direct(p, x0, u)
    y_l, x_l = simulate_lti(lti_plus_delta(p), x0, u)
    scale = max(1.0, np.abs(x_d).max())
    assert np.abs(x_d - x_l).max() <= MACHINE_TOL * scale
    assert np.abs(y_d - y_l).max() <= MACHINE_TOL * scale
    assert np.abs(x_d).max() > 1.0  # the runs really move


def test_matrices_are_the_explicit_euler_model():
    p = PendulumParams()
    m = lti_plus_delta(p)
    np.testing.assert_array_equal(m.A, [[1.0, 0.01], [0.0981, 1 - 0.009]])
    np.testing.assert_array_equal(m.B_u, [[0.0], [0.01]])
    np.testing.assert_array_equal(m.B_w, [[0.0], [-0.0981]])
    np.testing.assert_array_equal(m.C, [[1.0, 0.0]])
    # one step by hand from (φ, φ̇) = (0.3, −0.2), u = 0.7
    phi, om, u = 0.3, -0.2, 0.7
    expect = [phi + 0.01 * om, om + 0.01 * (9.81 * np.sin(phi) - 0.9 * om + u)]
    _, x = simulate_lti(m, np.array([[phi, om]]), np.array([[[u]]]))
    np.testing.assert_allclose(x[0, 1], expect, rtol=0, atol=1e-15)
    assert delta(np.array([0.0]))[0] == 0.0


@pytest.mark.parametrize("variant", ["as printed", "swapped B only", "garbled A only"])
def test_slide_matrices_are_wrong(variant):
    """The slide's A₁₁ = 1/(gδ) and its B₁/B₂ labels do not give the pendulum (errata)."""
    p = PendulumParams()
    good, slide = lti_plus_delta(p), slide_matrices(p)
    if variant == "swapped B only":
        slide = type(good)(A=good.A, B_u=slide.B_u, B_w=slide.B_w, C=good.C, C_z=good.C_z)
    elif variant == "garbled A only":
        slide = type(good)(A=slide.A, B_u=good.B_u, B_w=good.B_w, C=good.C, C_z=good.C_z)
    rng = np.random.default_rng(1)
    x0 = np.stack([np.pi + rng.uniform(-0.2, 0.2, 4), np.zeros(4)], axis=1)
    u = rng.normal(0, 2, (4, 30, 1))
    _, x_d = simulate_direct(p, x0, u)
    with np.errstate(over="ignore", invalid="ignore"):
        _, x_s = simulate_lti(slide, x0, u)
    assert not np.nanmax(np.abs(x_d - x_s)) < WRONG_MIN_ERROR


@pytest.mark.parametrize("field,value", [("dt", 0.0), ("dt", -0.01), ("m", -1.0), ("l", float("nan")), ("mu", -0.1)])
def test_bad_parameters(field, value):
    with pytest.raises(ConfigError, match=field):
        PendulumParams(**{field: value})


def test_bad_shapes():
    p = PendulumParams()
    with pytest.raises(ConfigError):
        simulate_direct(p, np.zeros((2, 3)), np.zeros((2, 5, 1)))
    with pytest.raises(ConfigError):
        simulate_direct(p, np.zeros((2, 2)), np.zeros((3, 5, 1)))


KW = dict(trajectories=9, steps=50, hold=5, noise_std=0.05, angle_spread=0.2, rate_spread=0.2, signal="mixed",
          amplitude=4.0, min_dwell=3, max_dwell=10, n_sines=4, f_max=1.0)


def test_dataset_is_zero_order_hold_sampling_of_the_direct_simulation():
    p = PendulumParams()
    ds = pendulum_dataset(p, seed=3, **KW)
    assert ds.u.shape == (9, 50, 1) and ds.y.shape == (9, 50, 1)
    y_fine, _ = simulate_direct(p, ds.meta["x0"], np.repeat(ds.u, 5, axis=1))
    np.testing.assert_array_equal(ds.y_clean, y_fine[:, ::5])
    noise = ds.y - ds.y_clean
    assert 0.03 < noise.std() < 0.07
    assert np.abs(ds.u).max() <= 4.0
    parts = np.concatenate([ds.split[k] for k in ("train", "val", "test")])
    assert sorted(parts.tolist()) == list(range(9))
    again = pendulum_dataset(p, seed=3, **KW)
    np.testing.assert_array_equal(ds.y, again.y)
    other = pendulum_dataset(p, seed=4, **KW)
    assert not np.array_equal(ds.y, other.y)


def test_signals_and_split():
    rng = np.random.default_rng(0)
    u = torque_signals(rng, 3, 100, signal="piecewise", amplitude=2.0, min_dwell=10, max_dwell=10, n_sines=1, f_max=1.0, sample_time=0.05)
    assert np.all(u[:, :10] == u[:, :1])  # held for the dwell time
    m = torque_signals(rng, 3, 100, signal="multisine", amplitude=2.0, min_dwell=1, max_dwell=1, n_sines=3, f_max=1.0, sample_time=0.05)
    np.testing.assert_allclose(np.abs(m).max(axis=(1, 2)), 2.0)
    with pytest.raises(ConfigError):
        torque_signals(rng, 1, 10, signal="chirp", amplitude=1.0, min_dwell=1, max_dwell=1, n_sines=1, f_max=1.0, sample_time=0.1)
    with pytest.raises(ConfigError):
        split_by_trajectory(2, (0.6, 0.2, 0.2), rng)
    with pytest.raises(ConfigError, match="noise_std"):
        pendulum_dataset(PendulumParams(), seed=0, **{**KW, "noise_std": -0.1})


def test_lecture_code_feedthrough_d22_is_not_the_pendulum():
    """Pitfall (errata): the lecture code's z = C x + 0.5 w makes each step the implicit equation
    w = Δ(C x + 0.5 w); solved exactly, it no longer reproduces the pendulum. With s = z + 0.5 w the
    equation is s + sin s = 2z (monotone in s, flat at s = π), solved by bracketing."""
    from scipy.optimize import brentq

    p = PendulumParams()
    m = lti_plus_delta(p)
    rng = np.random.default_rng(5)
    x0 = np.array([[np.pi + 0.3, 0.0]])
    u = rng.normal(0, 2, (1, 300, 1))
    _, x_d = simulate_direct(p, x0, u)
    x = x0.copy()
    worst = 0.0
    for k in range(300):
        worst = max(worst, np.abs(x - x_d[:, k]).max())
        z0 = (x @ m.C_z.T)[0, 0]
        s = brentq(lambda s: s + np.sin(s) - 2 * z0, 2 * z0 - 1.5, 2 * z0 + 1.5, xtol=1e-15, rtol=4 * np.finfo(float).eps)
        w = 2 * (s - z0)
        assert abs(w - delta(z0 + 0.5 * w)) < 1e-9
        x = x @ m.A.T + u[:, k] @ m.B_u.T + np.array([[w]]) @ m.B_w.T
    assert worst > WRONG_MIN_ERROR
