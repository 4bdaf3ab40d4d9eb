/**
 * A stack whose one secret is a column rule: `users.ssn` masked (full), detectors off, so
 * nothing but the column analysis can hide it. The agent's policy allows everything.
 */
import { startPgStack, TARGET, type PgStack } from './stack.js';

export async function startSsnStack(): Promise<PgStack> {
  const stack = await startPgStack({
    config: { masking: { [TARGET]: { columns: ['users.ssn'], detectors: [], style: 'full' } } },
  });
  await stack.pg.psql(
    `CREATE TABLE users (id int PRIMARY KEY, name text, ssn text);
     INSERT INTO users VALUES (1, 'ada', '000-00-0001');
     GRANT ALL ON users TO app;`,
  );
  return stack;
}
