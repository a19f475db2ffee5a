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


# --- the readings of Algorithm 1 (--as-bound, --as-refresh, --as-counter) -----------------

BOUND_OF_BIN = np.array([1.0] * 8 + [4.0, 16.0])        # the example: 1 x 8 bins, 4, 16


def _settle(bound, batch=2000, rounds=100, **kw):
    """P after `rounds` re-estimates from bounds fixed per bin and equal losses (so every
    Q^j stays uniform), no floor."""
    labels = np.arange(10_000) % 10
    a = samplers.ASSampler(10_000, batch, labels, min_prob=0.0, beta=5, bound=bound, **kw)
    steps = a.steps_per_epoch()
    for step in range(rounds * a.beta):
        ids, _ = a.batch(step // steps, step % steps)
        a.observe(ids, np.ones(len(ids)), BOUND_OF_BIN[labels[ids]])
    return a


@pytest.mark.parametrize("bound,closed_form", [
    ("listing", BOUND_OF_BIN / BOUND_OF_BIN.sum()),                     # [0.0357.., 0.143, 0.571]
    ("eq67", np.sqrt(BOUND_OF_BIN) / np.sqrt(BOUND_OF_BIN).sum())])     # [0.0714.., 0.143, 0.286]
def test_p_settles_at_the_closed_form_of_each_reading(bound, closed_form):
    """listing: p_new ~ sqrt(sum of the drawn samples' bounds) ~ sqrt(p_j b_j), whose fixed
    point is p ~ b; eq. 67: p ~ sqrt(sum over the bin of b / q) = |bin| sqrt(b) / ... ~ sqrt(b)."""
    a = _settle(bound)
    np.testing.assert_allclose(a.P, closed_form, rtol=0.04 if bound == "listing" else 1e-4)
    np.testing.assert_allclose(a.P[[0, 8, 9]], {"listing": [1 / 28, 4 / 28, 16 / 28],
                                                  "eq67": [1 / 14, 2 / 14, 4 / 14]}[bound],
                               rtol=0.04 if bound == "listing" else 1e-4)


def test_eq67_weighs_each_bound_by_one_over_q():
    """Eq. 67's sum is over the whole bin of G_i / q_i, with q_i the drawing probability."""
    labels = np.array([0, 0, 1, 1])
    a = samplers.ASSampler(4, 2, labels, min_prob=0.0, bound="eq67")
    a.bounds[:] = [1.0, 3.0, 2.0, np.nan]                  # sample 3 unseen: its bin's mean
    a.Q = [np.array([0.25, 0.75]), np.array([0.5, 0.5])]
    np.testing.assert_allclose(a.bin_sums(), [1 / 0.25 + 3 / 0.75, 2 / 0.5 + 2 / 0.5])
    a.bounds[:] = [1.0, 3.0, np.nan, np.nan]               # bin 1 unseen: the mean over all
    np.testing.assert_allclose(a.bin_sums()[1], 2 / 0.5 + 2 / 0.5)


def test_every_bin_refresh_touches_every_bin_each_beta_batches():
    labels = np.arange(300) % 3
    a = samplers.ASSampler(300, 16, labels, min_prob=0.0, beta=4, bound="eq67",
                           refresh="every-bin", refresh_per_bin=5)
    a.P = np.array([0.98, 0.02, 0.0])            # bin 2 is never drawn
    rng = np.random.default_rng(4)
    probes = 0
    for step in range(12):
        ids, _ = a.batch(0, step)
        P_before = a.P.copy()
        a.observe(ids, rng.random(len(ids)), rng.random(len(ids)))
        probe = a.probe_ids()
        if (step + 1) % 4:
            assert probe is None
            np.testing.assert_array_equal(a.P, P_before)
            continue
        # due: P waits for the probe; the probe holds 5 distinct samples of every bin
        np.testing.assert_array_equal(a.P, P_before)
        assert len(np.unique(probe)) == 15
        assert np.bincount(labels[probe], minlength=3).tolist() == [5, 5, 5]
        np.testing.assert_array_equal(probe, a.probe_ids())         # the same when asked again
        bounds = np.full(15, 7.0)
        a.observe_probe(probe, np.ones(15), bounds)
        probes += 1
        assert a.probe_ids() is None
        assert np.all(a.bounds[probe] == 7.0) and np.all(a.losses[probe] == 1.0)
        if probes == 1:
            assert P_before[2] == 0 and a.P[2] > 0            # the undrawn bin gained mass
    assert probes == 3


def test_drawn_refresh_never_sees_an_undrawn_bin():
    """Without the refresh, the listing's P never learns about a bin it does not draw."""
    labels = np.arange(300) % 3
    a = samplers.ASSampler(300, 16, labels, min_prob=0.0, beta=4)
    a.P = np.array([0.98, 0.02, 0.0])
    rng = np.random.default_rng(4)
    for step in range(12):
        ids, _ = a.batch(0, step)
        a.observe(ids, rng.random(len(ids)), rng.random(len(ids)))
        assert a.probe_ids() is None
    assert not np.isfinite(a.bounds[labels == 2]).any() and a.P[2] == 0


@pytest.mark.parametrize("bound", ["listing", "eq67"])
def test_the_per_sample_counter_is_the_per_batch_counter_on_batches_of_beta(bound):
    """--as-counter samples with beta = 10 re-estimates where batches of 10 with beta = 1 do."""
    labels = np.arange(200) % 5
    per_sample = samplers.ASSampler(200, 10, labels, beta=10, counter="samples", bound=bound)
    per_batch = samplers.ASSampler(200, 10, labels, beta=1, counter="batches", bound=bound)
    rng = np.random.default_rng(5)
    for step in range(20):
        ids, _ = per_sample.batch(0, step)
        np.testing.assert_array_equal(ids, per_batch.batch(0, step)[0])
        vals = rng.random((2, len(ids)))
        per_sample.observe(ids, *vals)
        per_batch.observe(ids, *vals)
        np.testing.assert_array_equal(per_sample.P, per_batch.P)
    assert per_sample.t == 200 and per_batch.t == 20


def test_the_per_sample_counter_re_estimates_inside_a_batch():
    labels = np.arange(100) % 4
    a = samplers.ASSampler(100, 25, labels, beta=10, counter="samples", min_prob=0.0)
    ids = np.arange(25)
    bounds = np.arange(25, dtype=np.float64)
    a.observe(ids, np.ones(25), bounds)          # re-estimates after samples 10 and 20
    assert a.t == 25
    np.testing.assert_allclose(a.gc, np.bincount(labels[20:25], weights=bounds[20:], minlength=4))
    a.observe(ids[:5], np.ones(5), bounds[:5])   # the 30th sample: a re-estimate, gc empty
    assert a.t == 30 and not a.gc.any()


def test_the_per_sample_counter_lets_noise_drive_p():
    """Why the listing read literally collapses: with every bound equal there is nothing to
    learn, and counting batches P stays uniform, but re-estimating every 10 samples makes
    each p_new the square root of a handful of draws and P wanders off uniform within a few
    epochs (in training, with bounds that feed back, it collapses onto a few classes:
    docs/sampling.md)."""
    labels = np.arange(4000) % 10
    spread = {}
    for counter in ("batches", "samples"):
        a = samplers.ASSampler(4000, 64, labels, min_prob=0.1, counter=counter)
        for step in range(63 * 3):
            ids, _ = a.batch(step // 63, step % 63)
            a.observe(ids, np.ones(len(ids)), np.full(len(ids), 0.5))
        spread[counter] = a.P.max() / a.P.min()
    assert spread["batches"] < 1.1
    assert spread["samples"] > 3


@pytest.mark.parametrize("options", [dict(bound="eq67"), dict(refresh="every-bin", refresh_per_bin=2),
                                     dict(counter="samples", beta=3)])
def test_state_round_trips_with_every_reading(options):
    labels = np.arange(60) % 3
    options = {"beta": 2, **options}
    a = samplers.ASSampler(60, 8, labels, **options)
    rng = np.random.default_rng(6)

    def step(s, k):
        ids, _ = s.batch(0, k)
        s.observe(ids, *rng.random((2, len(ids))))
        probe = s.probe_ids()
        if probe is not None:
            s.observe_probe(probe, *rng.random((2, len(probe))))

    for k in range(5):
        step(a, k)
    b = samplers.ASSampler(60, 8, labels, **options)
    b.load_state_dict(a.state_dict())
    state = rng.bit_generator.state
    step(a, 5)
    rng.bit_generator.state = state
    step(b, 5)
    for key, value in a.state_dict().items():
        np.testing.assert_array_equal(value, b.state_dict()[key], err_msg=key)


@pytest.mark.parametrize("options,message", [
    (dict(bound="sqrt"), "--as-bound"), (dict(refresh="all"), "--as-refresh"),
    (dict(counter="epochs"), "--as-counter"), (dict(refresh_per_bin=-1), "--as-refresh-per-bin"),
    (dict(refresh="every-bin", counter="samples"), "--as-counter batches")])
def test_bad_readings_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        samplers.ASSampler(10, 4, np.arange(10) % 2, **options)
