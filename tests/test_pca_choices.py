"""PCA's pure-Python side: k selection, refused arguments, the moments kept between nights."""

from __future__ import annotations

import numpy as np
import pytest

import moments
import pca
import principal_components

pytestmark = pytest.mark.unit


def test_k_is_the_fewest_components_reaching_the_target():
    cumulative = [0.5, 0.8, 0.95, 0.99, 1.0]
    assert principal_components.choose_k(cumulative, 0.95) == 3
    assert principal_components.choose_k(cumulative, 0.5) == 1
    assert principal_components.choose_k(cumulative, 0.96) == 4
    assert principal_components.choose_k(cumulative, 1.0) == 5
    assert (
        principal_components.choose_k([0.3, 0.9499999999999], 0.95) == 2
    )  # float noise at the threshold


@pytest.mark.parametrize(("k", "message"), [(1281, "feature size"), (101, "Training rows")])
def test_a_k_too_large_is_refused(k, message):
    with pytest.raises(SystemExit, match=message):
        principal_components.check_k(k, feature_size=1280, rows=100)


@pytest.mark.parametrize(
    "argv", [["--variance", "0"], ["--variance", "1.2"], ["--k", "0"], ["--until", "25/11/2026"]]
)
def test_bad_arguments_are_refused(argv, capsys):
    with pytest.raises(SystemExit):
        pca.parse_args(
            ["--features", "x", "--until", "2026-11-25", "--output", "y", "--vectors", "v", *argv]
        )
    error = capsys.readouterr().err
    assert "must be" in error or "is not a date" in error


def test_moments_merge_exactly():
    rows = np.random.default_rng(3).normal(2, 3, (500, 7))
    parts = [
        moments.Moments.of(rows[:100]),
        moments.Moments.of(rows[100:101]),
        moments.Moments.of(rows[101:]),
    ]
    merged = parts[0].merge(moments.Moments.empty(7)).merge(parts[1]).merge(parts[2])
    whole = moments.Moments.of(rows)
    assert merged.n == 500
    np.testing.assert_allclose(merged.mean, whole.mean, rtol=1e-12)
    np.testing.assert_allclose(merged.m2, whole.m2, rtol=1e-10)
    np.testing.assert_allclose(merged.covariance(), np.cov(rows, rowvar=False), rtol=1e-10)
    again = moments.Moments.from_bytes(merged.to_bytes())
    assert again.n == 500 and np.array_equal(again.m2, merged.m2)
    assert merged.to_bytes() == again.to_bytes()  # same moments, same bytes
