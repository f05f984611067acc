// Schedules a Warren task from a Node.js application on PostgreSQL, in the
// application's own transaction: the order row and its task commit together, or
// neither exists.
//
//   node schedule_pg.mjs postgres://postgres@127.0.0.1/app 42
//
// prints {"id": <task id>}. Needs node-postgres (`npm ci` here) and a database migrated
// by Warren (`warren migrate`), with a `demo_orders` table it creates if missing.

import pg from 'pg';

const [url, pingText] = process.argv.slice(2);
const ping = Number(pingText);
const client = new pg.Client({ connectionString: url });
await client.connect();
try {
  await client.query('CREATE TABLE IF NOT EXISTS demo_orders (id BIGSERIAL PRIMARY KEY, ping BIGINT NOT NULL)');
  await client.query('BEGIN');
  let id;
  try {
    await client.query('INSERT INTO demo_orders (ping) VALUES ($1)', [ping]);
    // JSON goes as text (node-postgres would send a JS array as a PostgreSQL array);
    // the id, a bigint, comes back as a string.
    const { rows } = await client.query('SELECT warren_schedule($1, $2, $3) AS id', [
      'demo:ping',
      JSON.stringify({ ping }),
      JSON.stringify({ priority: 'interactive' }),
    ]);
    id = rows[0].id;
    await client.query('COMMIT');
  } catch (e) {
    await client.query('ROLLBACK');
    throw e;
  }
  // Bad input is refused with SQLSTATE 22023 and a message naming the field.
  try {
    await client.query('SELECT warren_schedule($1, $2)', ['demo:ping', JSON.stringify([ping])]);
  } catch (e) {
    if (e.code !== '22023') throw e;
    process.stderr.write(`refused as expected: ${e.message}\n`);
  }
  console.log(JSON.stringify({ id: Number(id) }));
} finally {
  await client.end();
}
