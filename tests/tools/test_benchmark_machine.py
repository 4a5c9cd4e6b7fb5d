"""The report's floor line (benchmarks/machine.py): what a round trip and a hand-off cost."""

from __future__ import annotations

import math

import pytest
from django.db import connection

from benchmarks.machine import floor_line, hand_off_cost, round_trip_cost


def test_a_hand_off_costs_some_cpu():
    cost = hand_off_cost()
    assert math.isfinite(cost)
    assert cost > 0


def test_without_postgresql_the_floor_line_says_so_and_still_times_hand_offs():
    line = floor_line(None)
    assert line.startswith("floor:")
    assert "no PostgreSQL round trip (not run)" in line
    assert "a hand-off between two threads" in line


@pytest.mark.django_db
@pytest.mark.skipif(connection.vendor != "postgresql", reason="times a PostgreSQL round trip")
def test_a_round_trip_is_timed_on_the_server_given():
    from psycopg.conninfo import make_conninfo

    params = connection.get_connection_params()
    keys = ("dbname", "user", "password", "host", "port")
    conninfo = make_conninfo(**{key: params[key] for key in keys if params.get(key)})
    cpu, wall = round_trip_cost(conninfo)
    assert cpu > 0
    assert wall > 0
    assert "a SELECT 1 round trip (psycopg)" in floor_line(conninfo)
