"""``LazySavepoint``: a savepoint taken at the guarded code's first statement, or never.

A cycle runs the user's ``schedule`` behind one; these tests drive it
directly, inside a transaction of their own that commits for real, so that
``transaction.on_commit`` callbacks run (or are dropped) as in a cycle.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from django_planton.runner.savepoint import LazySavepoint

pytestmark = pytest.mark.django_db(transaction=True)


class Boom(Exception):
    pass


def savepoint_statements(queries: CaptureQueriesContext) -> list[str]:
    return [query["sql"] for query in queries.captured_queries if "SAVEPOINT" in query["sql"]]


def group_names() -> set[str]:
    return set(Group.objects.values_list("name", flat=True))


def count_then_fail() -> None:
    Group.objects.count()
    raise Boom


def write_in_atomic_then_fail(called: list[str]) -> None:
    with transaction.atomic():
        Group.objects.create(name="undone")
        transaction.on_commit(lambda: called.append("undone"))
        raise Boom


def test_no_statement_sent_means_no_savepoint_taken():
    with transaction.atomic():
        ids_before = list(connection.savepoint_ids)
        with CaptureQueriesContext(connection) as queries:
            with LazySavepoint(connection) as guard:
                total = sum(range(3))  # plain Python: nothing sent
            assert total == 3
            assert not guard.taken
            assert guard.sid is None
            guard.rollback()  # nothing to undo
            guard.release()  # nothing to keep
        assert queries.captured_queries == []
        assert connection.savepoint_ids == ids_before
        assert guard not in connection.execute_wrappers


def test_rollback_without_a_statement_leaves_the_transaction_alone():
    called = []
    with transaction.atomic():
        Group.objects.create(name="outside")
        transaction.on_commit(lambda: called.append("outside"))
        with LazySavepoint(connection) as guard:
            pass
        guard.rollback()
    assert group_names() == {"outside"}
    assert called == ["outside"]


def test_the_first_statement_takes_the_savepoint_once():
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        with LazySavepoint(connection) as guard:
            Group.objects.count()
            sid = guard.sid
            assert guard.taken
            assert sid in connection.savepoint_ids
            Group.objects.count()
            Group.objects.create(name="one")
            assert guard.sid == sid  # still the same savepoint
        guard.release()
        assert sid not in connection.savepoint_ids
    savepoints = savepoint_statements(queries)
    assert len(savepoints) == 2  # taken once before the first count, released once
    assert sid in savepoints[0]
    assert "RELEASE" in savepoints[1].upper()
    sqls = [query["sql"] for query in queries.captured_queries]
    assert sqls.index(savepoints[0]) < next(
        index for index, sql in enumerate(sqls) if "auth_group" in sql
    )
    assert group_names() == {"one"}


def test_the_wrapper_is_removed_when_the_block_ends_even_on_error():
    with transaction.atomic():
        wrappers = list(connection.execute_wrappers)
        with pytest.raises(Boom), LazySavepoint(connection) as guard:
            count_then_fail()
        assert connection.execute_wrappers == wrappers
        guard.rollback()


def test_outside_a_transaction_there_is_no_savepoint_to_take():
    # In autocommit Django takes no savepoints: every statement commits on its own.
    with LazySavepoint(connection) as guard:
        Group.objects.create(name="autocommitted")
    assert not guard.taken
    guard.rollback()
    assert group_names() == {"autocommitted"}


def test_rollback_undoes_the_guarded_writes_and_drops_their_on_commit_callbacks():
    called = []
    with transaction.atomic():
        Group.objects.create(name="before")
        transaction.on_commit(lambda: called.append("before"))
        with LazySavepoint(connection) as guard:
            Group.objects.create(name="guarded")
            transaction.on_commit(lambda: called.append("guarded"))
        guard.rollback()
        assert not Group.objects.filter(name="guarded").exists()
        assert guard.sid not in connection.savepoint_ids
        Group.objects.create(name="after")
        transaction.on_commit(lambda: called.append("after"))
    assert group_names() == {"before", "after"}
    assert called == ["before", "after"]


def test_release_keeps_the_guarded_writes_and_their_on_commit_callbacks():
    called = []
    with transaction.atomic():
        with LazySavepoint(connection) as guard:
            Group.objects.create(name="guarded")
            transaction.on_commit(lambda: called.append("guarded"))
        guard.release()
        assert guard.sid not in connection.savepoint_ids
        assert called == []  # not before the outer transaction commits
    assert group_names() == {"guarded"}
    assert called == ["guarded"]


def test_an_atomic_block_as_the_first_statement_nests_inside_the_savepoint():
    called = []
    with transaction.atomic():
        with LazySavepoint(connection) as guard:
            # The atomic block's own SAVEPOINT is the first statement sent.
            with transaction.atomic():
                assert guard.taken
                inner = connection.savepoint_ids[-1]
                assert connection.savepoint_ids[-2:] == [guard.sid, inner]
                Group.objects.create(name="nested")
                transaction.on_commit(lambda: called.append("nested"))
            assert connection.savepoint_ids[-1] == guard.sid
        guard.rollback()
        assert not Group.objects.filter(name="nested").exists()
    assert group_names() == set()
    assert called == []


def test_an_atomic_block_rolled_back_inside_leaves_the_rest_of_the_guarded_writes():
    called = []
    with transaction.atomic():
        with LazySavepoint(connection) as guard:
            Group.objects.create(name="first")
            with pytest.raises(Boom):
                write_in_atomic_then_fail(called)
            Group.objects.create(name="second")
            transaction.on_commit(lambda: called.append("second"))
        guard.release()
    assert group_names() == {"first", "second"}
    assert called == ["second"]


def test_rollback_mends_an_error_swallowed_inside_atomic_without_a_savepoint():
    with transaction.atomic():
        Group.objects.create(name="taken")
        with LazySavepoint(connection) as guard:
            Group.objects.create(name="guarded")
            with pytest.raises(IntegrityError), transaction.atomic(savepoint=False):
                Group.objects.create(name="taken")
            assert connection.needs_rollback  # Django would refuse any further query
        guard.rollback()
        assert not connection.needs_rollback
        Group.objects.create(name="after")
    assert group_names() == {"taken", "after"}
