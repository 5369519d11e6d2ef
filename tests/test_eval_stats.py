"""Confidence intervals over seeds (pose3d.eval.stats) against Student t values by hand."""

import math

import pytest

from pose3d.eval.stats import excludes_zero, format_interval, paired_difference, t_interval

# scipy.stats.t.ppf(0.975, df) for df = 1, 4 and ppf(0.95, 4), from a t table
T975_1, T975_4, T95_4 = 12.706204736, 2.776445105, 2.131846786


def test_t_interval_matches_the_t_table():
    got = t_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    sd = math.sqrt(2.5)  # sample standard deviation (n - 1)
    assert got["mean"] == 3.0 and got["n"] == 5 and got["sd"] == pytest.approx(sd)
    assert got["half_width"] == pytest.approx(T975_4 * sd / math.sqrt(5), rel=1e-8)
    assert (got["lo"], got["hi"]) == pytest.approx((3 - 1.963243161, 3 + 1.963243161))
    assert t_interval([1.0, 2.0, 3.0, 4.0, 5.0], 0.90)["half_width"] == pytest.approx(
        T95_4 * sd / math.sqrt(5), rel=1e-8)
    two = t_interval([0.0, 2.0])
    assert two["half_width"] == pytest.approx(T975_1, rel=1e-8)  # sd = sqrt(2), n = 2


def test_one_value_has_no_interval_and_bad_input_raises():
    one = t_interval([4.2])
    assert one["mean"] == 4.2 and math.isnan(one["lo"]) and not excludes_zero(one)
    assert format_interval(one) == "4.20"
    with pytest.raises(ValueError, match="at least one value"):
        t_interval([])
    with pytest.raises(ValueError, match="finite"):
        t_interval([1.0, float("nan")])
    with pytest.raises(ValueError, match="confidence"):
        t_interval([1.0, 2.0], confidence=95)


def test_paired_difference_cancels_what_the_seeds_share():
    # seed effects of +-5 mm shared by both arms; the arm effect is exactly -1 mm
    a = [90.0 - 1, 95.0 - 1, 85.0 - 1, 92.0 - 1]
    b = [90.0, 95.0, 85.0, 92.0]
    d = paired_difference(a, b)
    assert d["values"] == [-1.0] * 4 and d["mean"] == -1.0 and d["half_width"] == 0.0
    assert excludes_zero(d)  # while the arms' own intervals overlap widely
    assert not excludes_zero(paired_difference([1.0, -1.0, 2.0], [0.0, 0.0, 0.0]))
    constant = paired_difference([3.0, 5.0], [1.0])  # against one model (Base)
    assert constant["values"] == [2.0, 4.0]
    with pytest.raises(ValueError, match="as many values"):
        paired_difference([1.0, 2.0, 3.0], [1.0, 2.0])
    assert format_interval(t_interval([1.0, 2.0, 3.0, 4.0, 5.0])) == "3.00 [1.04, 4.96]"
