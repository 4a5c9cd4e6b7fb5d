"""The measured runs, one per child process: ``python -m benchmarks.workloads NAME JSON``.

Each run resets the tables, measures, checks its result against the database
and prints one ``BENCHMARK-RESULT {json}`` line for the orchestrator
(:mod:`benchmarks.protocol`). A fresh process per run keeps the peak memory
(``ru_maxrss``) and the warm caches of one run out of the next.

One module per workload, each with ``run(params) -> result``: :mod:`.drain`,
:mod:`.baseline` (the hand-written psycopg loops), :mod:`.threaded` (the executors'
threaded one), :mod:`.node` (planton on Node), :mod:`.refill`,
:mod:`.backoff`, :mod:`.idle`, :mod:`.loop` (the loop alone, a floor under
the scale curve), :mod:`.fleet` (several runner processes, each a
:mod:`.member`). What they share: :mod:`.common` (tasks, counters),
:mod:`.meters` (time, CPU, statements, memory), :mod:`.tables` (resetting
and checking the tables), :mod:`.activity` (what the server sees: its
connections, lock waits and counters), :mod:`.hooks` (what runs around each
attempt). These modules import Django models at the top, so they are only
imported once :func:`benchmarks.workloads.__main__.main` has set Django up;
this package's ``__init__`` imports nothing.

The benchmark tasks are the example site's ``send_user_email`` under other
names: the same schedule function on the same ``accounts_useraccount`` table,
with the concurrency and delays each workload asks for, and receivers of the
benchmark's own.
"""

#: The workloads, each a module of this package with a ``run(params)`` function.
#: ``member`` is started by ``fleet``, not by the orchestrator; ``node`` runs the
#: original planton on Node (:mod:`benchmarks.nodejs`).
NAMES = (
    "backoff",
    "baseline",
    "drain",
    "fleet",
    "idle",
    "loop",
    "member",
    "node",
    "refill",
    "threaded",
)
