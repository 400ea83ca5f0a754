"""Cash statistic and TS helpers vs gammapy (live)."""
import numpy as np
import pytest

from gamma_ray_dist import stats


def _data():
    rng = np.random.default_rng(3)
    mu = rng.uniform(0.0, 20.0, 5000)
    mu[:20] = 0.0
    mu[20:40] = 1e-30
    n = rng.poisson(mu + 0.5).astype(float)
    n[:10] = 0
    return n, mu


def test_cash_matches_gammapy():
    fs = pytest.importorskip("gammapy.stats.fit_statistics")
    n, mu = _data()
    # elementwise: identical formula -> tight tolerance
    np.testing.assert_allclose(stats.cash(n, mu), fs.cash(n, mu), rtol=1e-14, atol=0)
    np.testing.assert_allclose(stats.cash(n, mu, 1e-5), fs.cash(n, mu, 1e-5), rtol=1e-14)


def test_cash_sum_matches_gammapy_cython():
    cy = pytest.importorskip("gammapy.stats.fit_statistics_cython")
    n, mu = _data()
    # summation order differs (pairwise vs sequential): 1e-12 relative
    assert stats.cash_sum(n, mu) == pytest.approx(cy.cash_sum_cython(n, mu), rel=1e-12)
    mask = n > 2
    assert stats.cash_sum_masked(n, mu, mask) == pytest.approx(cy.cash_sum_cython(n[mask], mu[mask]), rel=1e-12)


def test_cash_zero_prediction_and_errors():
    # no counts, zero prediction: costs nothing; counts with zero prediction: large finite penalty
    assert stats.cash_sum([0.0], [0.0]) == pytest.approx(2e-25)
    assert stats.cash_sum([1.0], [0.0]) == pytest.approx(2 * (1e-25 - np.log(1e-25)), rel=1e-9)
    with pytest.raises(ValueError, match="positive"):
        stats.cash([1], [1], truncation_value=0)
    with pytest.raises(ValueError, match="same size"):
        stats.cash_sum([1, 2], [1])


def test_ts_helpers():
    ts = stats.ts_from_stats([10.0, 5.0], [1.0, 5.5])
    np.testing.assert_allclose(ts, [9.0, -0.5])
    np.testing.assert_allclose(stats.sqrt_ts(ts, sign=[1.0, -2.0]), [3.0, -0.0])
    np.testing.assert_allclose(stats.sqrt_ts([4.0], sign=[-1.0]), [-2.0])


def test_cash_sum_nan_prediction_propagates():
    # deliberate difference from gammapy (which maps NaN to the truncation value)
    assert np.isnan(stats.cash_sum([1.0, 2.0], [1.0, np.nan]))
