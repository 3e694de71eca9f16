"""``LegTimes`` (cluster/timing.py): the cumulative buckets, count and sum of each leg."""

from __future__ import annotations

import pytest

from zvonok.cluster.timing import LegTimes


def test_each_leg_counts_into_the_first_bucket_that_holds_it() -> None:
    times = LegTimes(("locate", "bus"), buckets=(0.001, 0.01))
    for seconds in (0.0005, 0.001, 0.002, 0.5, -1.0):
        times.observe("bus", seconds)
    histograms = {leg: (buckets, total) for leg, buckets, total in times.histograms()}
    assert histograms["locate"] == ([("0.001", 0), ("0.01", 0), ("+Inf", 0)], 0.0)
    buckets, total = histograms["bus"]
    assert buckets == [("0.001", 3), ("0.01", 4), ("+Inf", 5)]  # le: at most the bound
    assert total == pytest.approx(0.5035)  # a negative time (a clock step) counts as 0
    assert times.count("bus") == 5 and times.count("locate") == 0
    with pytest.raises(KeyError):
        times.observe("serve", 0.1)
