/** SASLprep lives in src/shared (the session secret and SCRAM both use it); re-exported for the Postgres code. */
export { saslprep } from '../../shared/saslprep.js';
