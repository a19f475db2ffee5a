"""OBS and Adaptive Sampling: distributions, smoothing, floors, unbiasedness, determinism."""
import numpy as np
import pytest

from dptrain.data import samplers


def test_obs_rank_probabilities_follow_the_formula():
    n, s = 50, 100.0
    obs = samplers.OBSSampler(n, 10, pressure=s, min_prob=0.0)
    losses = np.random.default_rng(0).random(n)
    obs.refresh(losses, None)
    p = obs.probabilities()
    order = np.argsort(-losses)                     # rank 0 = highest loss
    expected = np.exp(-np.arange(n) * np.log(s) / n)
    expected /= expected.sum()
    np.testing.assert_allclose(p[order], expected, rtol=1e-12)
    assert p[order[0]] / p[order[-1]] == pytest.approx(s ** ((n - 1) / n))
    assert p.sum() == pytest.approx(1.0)


@pytest.mark.parametrize("floor", [0.0, 0.1, 0.5])
def test_distributions_sum_to_one_and_respect_the_floor(floor):
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, 200)
    a = samplers.ASSampler(200, 16, labels, min_prob=floor)
    for step in range(30):
        ids, _ = a.batch(0, step % 12)
        a.observe(ids, rng.random(len(ids)) ** 8, rng.random(len(ids)) ** 8)
    P, Q = a.sampling_probs()
    assert P.sum() == pytest.approx(1.0) and P.min() >= floor / len(P) - 1e-15
    for q in Q:
        assert q.sum() == pytest.approx(1.0) and q.min() >= floor / len(q) - 1e-15
    o = samplers.OBSSampler(200, 16, min_prob=floor)
    o.refresh(rng.random(200), None)
    p = o.probabilities()
    assert p.sum() == pytest.approx(1.0) and p.min() >= floor / 200 - 1e-15


def test_as_smoothing_as_specified():
    labels = np.array([0, 0, 1, 1, 1, 2])
    a = samplers.ASSampler(6, 2, labels, beta=2, delta_p=0.9, delta_q=0.1, min_prob=0.0)
    P0, Q1_0 = a.P.copy(), a.Q[1].copy()
    # step 1: samples 0 (bin 0) and 2 (bin 1); no P update yet (t = 1)
    a.observe(np.array([0, 2]), np.array([1.0, 3.0]), np.array([4.0, 1.0]))
    np.testing.assert_array_equal(a.P, P0)
    # Q^1: sample 2 seen (loss 3), samples 3 and 4 unseen -> the new Q goes to the unseen ones
    np.testing.assert_allclose(a.Q[1], 0.1 * Q1_0 + 0.9 * np.array([0, 0.5, 0.5]))
    # step 2: t = 2 = beta: P <- 0.9 P + 0.1 sqrt(gc) / sum, gc over both steps, then reset
    a.observe(np.array([5, 1]), np.array([2.0, 1.0]), np.array([9.0, 0.0]))
    gc = np.array([4.0 + 0.0, 1.0, 9.0])
    np.testing.assert_allclose(a.P, 0.9 * P0 + 0.1 * np.sqrt(gc) / np.sqrt(gc).sum())
    np.testing.assert_array_equal(a.gc, 0)
    # Q^0 now has both losses (1, 1): proportional to them
    q0 = 0.1 * (0.1 * np.full(2, 0.5) + 0.9 * np.array([0, 1.0])) + 0.9 * np.array([0.5, 0.5])
    np.testing.assert_allclose(a.Q[0], q0)


def test_importance_weighted_gradient_is_unbiased():
    """Monte Carlo mean of the weighted mini-batch gradient of a linear least-squares model
    equals the full-data gradient, for a deliberately skewed AS distribution."""
    rng = np.random.default_rng(2)
    n, d = 60, 3
    x, labels = rng.standard_normal((n, d)), rng.integers(0, 3, n)
    target, w = rng.standard_normal(n), rng.standard_normal(d)
    per_sample_grad = (x @ w - target)[:, None] * x             # d/dw of 1/2 (x.w - t)^2
    full = per_sample_grad.mean(axis=0)
    a = samplers.ASSampler(n, 8, labels, min_prob=0.05, beta=1, delta_p=0.5)
    for step in range(6):                                         # skew P and Q away from uniform
        ids, _ = a.batch(0, step)
        a.observe(ids, rng.random(len(ids)) * 10, rng.random(len(ids)) ** 6 * 5)
    P, Q = a.sampling_probs()
    assert np.abs(P - 1 / len(P)).max() > 0.01                   # really non-uniform
    estimates = []
    for draw in range(6000):
        ids, weights = a.batch(1 + draw, 0)                        # a fresh draw each time
        estimates.append((weights[:, None] * per_sample_grad[ids]).mean(axis=0))
    est = np.mean(estimates, axis=0)
    sem = np.std(estimates, axis=0) / np.sqrt(len(estimates))
    assert np.all(np.abs(est - full) < 5 * sem + 1e-12), (est, full, sem)
    # without the weights the same draws are biased
    unweighted = np.mean([per_sample_grad[a.batch(1 + k, 0)[0]].mean(axis=0) for k in range(3000)],
                         axis=0)
    assert np.any(np.abs(unweighted - full) > 5 * sem)


def test_draws_are_deterministic_and_state_round_trips():
    labels = np.arange(100) % 10
    a, b = samplers.ASSampler(100, 8, labels), samplers.ASSampler(100, 8, labels)
    rng = np.random.default_rng(3)
    for step in range(5):
        ids, _ = a.batch(0, step)
        vals = rng.random((2, len(ids)))
        a.observe(ids, *vals)
        b.observe(ids, *vals)
    np.testing.assert_array_equal(a.batch(0, 5)[0], b.batch(0, 5)[0])
    c = samplers.ASSampler(100, 8, labels)
    c.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(a.batch(2, 3)[0], c.batch(2, 3)[0])
    np.testing.assert_array_equal(a.batch(2, 3)[1], c.batch(2, 3)[1])


def test_epoch_has_n_samples_worth_of_batches():
    for s in (samplers.OBSSampler(10, 4), samplers.ASSampler(10, 4, np.arange(10) % 2),
              samplers.UniformSampler(10, 4)):
        assert s.steps_per_epoch() == 3
        assert [len(s.batch(0, p)[0]) for p in range(3)] == [4, 4, 2]
