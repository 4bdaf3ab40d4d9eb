/** The `--limit` of a paged listing, checked before anything is asked of the broker. */
import { UsageError } from '../errors.js';

export const MAX_PAGE_LIMIT = 200;

export function pageLimit(text: string | undefined): number {
  const n = Number(text ?? '50');
  if (!Number.isInteger(n) || n < 1 || n > MAX_PAGE_LIMIT) {
    throw new UsageError(`--limit must be a whole number from 1 to ${MAX_PAGE_LIMIT}, got ${JSON.stringify(text)}`, { hint: 'e.g. agentgate requests --limit 50' });
  }
  return n;
}
