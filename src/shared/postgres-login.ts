/**
 * The user name a Postgres client presents to the local listener. `connect` prints it in
 * the connection string and `run` exports it as PGUSER; the broker accepts only this name
 * (and the target's database), as PostgreSQL accepts only roles and databases that exist.
 * Upstream, the broker logs in as the target's configured role.
 */
export const POSTGRES_CLIENT_USER = 'agent';
