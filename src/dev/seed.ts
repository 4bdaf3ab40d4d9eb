/**
 * The demo data `agentgate dev` loads: customers with names, emails and card numbers (the
 * card networks' published test numbers: Luhn-valid, never issued to anyone) and their
 * orders. Notes carry an email and a card number in free text, so the value detectors
 * have something to find beside the masked columns.
 */

export interface DemoCustomer {
  name: string;
  email: string;
  card_number: string;
  notes: string;
}

export const DEMO_CUSTOMERS: readonly DemoCustomer[] = [
  { name: 'Ada Lovelace', email: 'ada@example.com', card_number: '4111 1111 1111 1111', notes: 'prefers contact at ada.l@example.org' },
  { name: 'Grace Hopper', email: 'grace@example.com', card_number: '5555 5555 5555 4444', notes: 'backup card 4012 8888 8888 1881 on file' },
  { name: 'Alan Turing', email: 'alan@example.org', card_number: '3782 822463 10005', notes: 'VIP' },
  { name: 'Katherine Johnson', email: 'katherine@example.net', card_number: '6011 1111 1111 1117', notes: '' },
  { name: 'Edsger Dijkstra', email: 'edsger@example.com', card_number: '4242 4242 4242 4242', notes: 'asked for paper invoices' },
];

export interface DemoOrder {
  customer: number;
  item: string;
  amount: string;
  status: 'paid' | 'shipped' | 'refunded';
}

export const DEMO_ORDERS: readonly DemoOrder[] = [
  { customer: 1, item: 'Analytical Engine manual', amount: '49.00', status: 'shipped' },
  { customer: 2, item: 'COBOL reference card', amount: '12.50', status: 'paid' },
  { customer: 2, item: 'Moth in a frame', amount: '99.99', status: 'paid' },
  { customer: 3, item: 'Enigma rotor set', amount: '310.00', status: 'shipped' },
  { customer: 4, item: 'Orbital mechanics tables', amount: '75.25', status: 'paid' },
  { customer: 5, item: 'Shortest-path poster', amount: '18.00', status: 'paid' },
];

const quote = (s: string): string => `'${s.replace(/'/g, "''")}'`;

/** Tables and rows. Plain statements, each ending in `;` on its own line, so any client (or single-user mode) can run them. */
export function seedSql(): string[] {
  return [
    `CREATE TABLE customers (
  id serial PRIMARY KEY,
  name text NOT NULL,
  email text NOT NULL,
  card_number text NOT NULL,
  notes text NOT NULL DEFAULT '',
  created_at timestamptz NOT NULL DEFAULT now()
);`,
    `CREATE TABLE orders (
  id serial PRIMARY KEY,
  customer_id integer NOT NULL REFERENCES customers (id),
  item text NOT NULL,
  amount numeric(10, 2) NOT NULL,
  status text NOT NULL DEFAULT 'paid',
  created_at timestamptz NOT NULL DEFAULT now()
);`,
    `INSERT INTO customers (name, email, card_number, notes) VALUES\n${DEMO_CUSTOMERS.map(
      (c) => `  (${[c.name, c.email, c.card_number, c.notes].map(quote).join(', ')})`,
    ).join(',\n')};`,
    `INSERT INTO orders (customer_id, item, amount, status) VALUES\n${DEMO_ORDERS.map(
      (o) => `  (${o.customer}, ${quote(o.item)}, ${o.amount}, ${quote(o.status)})`,
    ).join(',\n')};`,
  ];
}

/** The Luhn check every real card number passes (and the credit_card detector applies). */
export function luhnValid(digits: string): boolean {
  const d = digits.replace(/[\s-]/g, '');
  if (!/^\d{12,19}$/.test(d)) return false;
  let sum = 0;
  for (let i = 0; i < d.length; i++) {
    let n = d.charCodeAt(d.length - 1 - i) - 48;
    if (i % 2 === 1) {
      n *= 2;
      if (n > 9) n -= 9;
    }
    sum += n;
  }
  return sum % 10 === 0;
}
