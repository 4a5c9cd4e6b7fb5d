"""The measures the tests, the stress run and the benchmarks share (scripts/measure.py)."""

from __future__ import annotations

import pytest

from scripts.measure import most_at_once


def test_no_spans_is_zero():
    assert most_at_once([]) == 0


def test_overlapping_spans_count_together():
    assert most_at_once([(0, 10), (5, 15), (6, 7)]) == 3


def test_an_end_and_a_start_at_one_instant_do_not_overlap():
    assert most_at_once([(0, 5), (5, 10), (10, 15)]) == 1


def test_disjoint_spans_are_one_at_a_time():
    assert most_at_once([(0, 1), (2, 3)]) == 1


@pytest.mark.parametrize("span", [(5, None), (5, 4)])
def test_an_open_or_reversed_span_is_refused(span):
    with pytest.raises(ValueError, match="not a closed span"):
        most_at_once([span])
