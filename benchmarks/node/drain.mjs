// The drain of the benchmark (benchmarks/README.md, section 1) by the original
// planton on Node: the reference for django-planton's complete-only drain.
//
//   DATABASE_URL=postgres://... node benchmarks/node/drain.mjs '{"accounts": 5000,
//     "concurrency": 50, "timeout": 120, "task": "bench_node"}'
//
// The tables must be ready: the accounts created and the task's row in
// maintenance_task (benchmarks/workloads/node.py does both, runs this script
// and checks the tables after it). planton only decides when to call the
// schedule and with which limit; as its README's example does, the schedule
// claims the accounts and marks them in one statement, which here also
// inserts their executions (so that the next getActiveTaskInstructions counts
// them at once, as django-planton's cycle does); the 'task' handler completes
// each execution with one UPDATE. Prints one line: BENCHMARK-RESULT {json}.

import {createRequire} from 'node:module';
import {performance} from 'node:perf_hooks';
import pg from 'pg';
import {createPlanton} from 'planton';

const require = createRequire(import.meta.url);
const RESULT_PREFIX = 'BENCHMARK-RESULT ';
// The pool of the measurement (and pg's default size).
const POOL_SIZE = 10;

// As README's getActiveTaskInstructions: the task's executions not ended yet.
const ACTIVE_SQL = `
SELECT mte1.instruction
  FROM maintenance_task mt1
  JOIN maintenance_task_execution mte1 ON mte1.maintenance_task_id = mt1.id
 WHERE mt1.nid = $1 AND mte1.ended_at IS NULL`;

// send_user_email's claim (owed an e-mail, not deleted, not an active
// instruction; less its exclusion of accounts whose e-mail failed lately: none
// fails here), marking the accounts as the complete-only drain's schedule does
// and inserting their executions, in one statement: the psycopg baseline's.
const CLAIM_SQL = `
WITH claimed AS (
    UPDATE accounts_useraccount SET email_sent_at = now()
     WHERE id IN (
        SELECT id FROM accounts_useraccount
         WHERE email_sent_at IS NULL AND deleted_at IS NULL AND id <> ALL($1::bigint[])
         ORDER BY id LIMIT $2
           FOR UPDATE SKIP LOCKED)
    RETURNING id
)
INSERT INTO maintenance_task_execution
       (maintenance_task_id, instruction, attempt, started_at, hostname, state, created_at)
SELECT $3, claimed.id::text, 1, now(), 'benchmark', 'RUNNING', now() FROM claimed
RETURNING id, instruction`;

const COMPLETE_SQL = `
UPDATE maintenance_task_execution SET state = 'COMPLETED', ended_at = now(), last_seen_at = now()
 WHERE id = $1 AND ended_at IS NULL`;

const emit = (result) => {
  process.stdout.write(RESULT_PREFIX + JSON.stringify(result) + '\n');
};

const cpuSeconds = (usage) => {
  return (usage.user + usage.system) / 1e6;
};

const drain = async ({accounts, concurrency, timeout, task: taskName}) => {
  const pool = new pg.Pool({connectionString: process.env.DATABASE_URL, max: POOL_SIZE});
  const problems = [];
  pool.on('error', (error) => {
    problems.push(`pool: ${error.message}`);
  });
  const {rows} = await pool.query('SELECT id FROM maintenance_task WHERE nid = $1', [taskName]);
  if (rows.length !== 1) {
    await pool.end();
    return {problems: [`no maintenance_task row named ${taskName}`]};
  }
  const taskId = rows[0].id;

  // Statements, counted as the Python runs count theirs (no BEGIN/COMMIT):
  // CYCLE is the read that starts each of planton's cycles.
  const queries = {CYCLE: 0, CLAIM: 0, UPDATE: 0};
  // The execution of each dispatched instruction: the 'task' event carries
  // only the instruction.
  const executions = new Map();
  let ended = 0;
  let notEnded = 0;
  let finish;
  const finished = new Promise((resolve) => {
    finish = resolve;
  });
  const timer = setTimeout(() => {
    finish(false);
  }, timeout * 1000);

  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let wall = 0;
  let cpu = 0;
  const planton = createPlanton({
    getActiveTaskInstructions: async (name) => {
      queries.CYCLE++;
      const result = await pool.query(ACTIVE_SQL, [name]);
      return result.rows.map((row) => row.instruction);
    },
    tasks: [
      {
        // 0 ms after a cycle that found work, 5 ms after an empty one.
        calculateDelay: (attemptNumber) => {
          return attemptNumber === 0 ? 0 : 5;
        },
        concurrency,
        name: taskName,
        schedule: async ({activeTaskInstructions, limit}) => {
          queries.CLAIM++;
          const result = await pool.query(CLAIM_SQL, [activeTaskInstructions, limit, taskId]);
          return result.rows.map((row) => {
            executions.set(row.instruction, row.id);
            return row.instruction;
          });
        },
      },
    ],
  });
  planton.events.on('error', ({error}) => {
    problems.push(`planton: ${error.message}`);
  });
  planton.events.on('task', async ({instruction}) => {
    const executionId = executions.get(instruction);
    executions.delete(instruction);
    try {
      queries.UPDATE++;
      const result = await pool.query(COMPLETE_SQL, [executionId]);
      if (result.rowCount === 1) {
        ended++;
      } else {
        notEnded++;
      }
    } catch (error) {
      problems.push(`complete: ${error.message}`);
      notEnded++;
    }
    if (ended >= accounts && !wall) {
      wall = (performance.now() - t0) / 1000;
      cpu = cpuSeconds(process.cpuUsage(cpu0));
      finish(true);
    }
  });

  const drained = accounts === 0 || (await finished);
  clearTimeout(timer);
  if (!wall) {
    wall = (performance.now() - t0) / 1000;
    cpu = cpuSeconds(process.cpuUsage(cpu0));
  }
  await planton.terminate();
  await pool.end();
  if (!drained) {
    problems.push(`not drained within ${timeout} s`);
  }
  if (notEnded) {
    problems.push(`${notEnded} execution(s) were already ended when completed`);
  }
  const queryTotal = queries.CYCLE + queries.CLAIM + queries.UPDATE;
  return {
    cpu,
    instructions: accounts,
    peak_rss_mb: process.resourceUsage().maxRSS / 1024,
    problems,
    queries,
    query_total: queryTotal,
    versions: {
      node: process.versions.node,
      pg: require('pg/package.json').version,
      planton: require('planton/package.json').version,
    },
    wall,
  };
};

const main = async () => {
  let result;
  try {
    result = await drain(JSON.parse(process.argv[2]));
  } catch (error) {
    console.error(error);
    result = {problems: [`${error.name}: ${error.message}`]};
  }
  emit(result);
  process.exitCode = result.problems.length ? 1 : 0;
};

await main();
