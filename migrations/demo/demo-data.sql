-- Demo catalogue and customers for local runs. Safe to apply twice.
INSERT INTO venues (venue_id, name, address, total_capacity) VALUES
  (1, 'Harbour Hall', '1 Quay Street, Portside', 5000),
  (2, 'The Cellar Club', '12 Vine Lane, Old Town', 120),
  (3, 'Riverside Arena', '400 River Road, Eastbank', 20000)
ON CONFLICT (venue_id) DO NOTHING;

INSERT INTO events (event_id, name, venue_id, total_capacity, left_capacity, ticket_price) VALUES
  (1, 'Symphony at the Harbour', 1, 5000, 5000, 45.00),
  (2, 'Late Night Jazz Trio', 2, 10, 10, 19.99),
  (3, 'Championship Final', 3, 20000, 20000, 120.50),
  (4, 'Indie Showcase', 2, 120, 120, 12.25)
ON CONFLICT (event_id) DO NOTHING;

INSERT INTO customers (customer_id, name, email, address) VALUES
  (1, 'Alice Archer', 'alice@example.com', '3 Elm Row'),
  (2, 'Bob Baker', 'bob@example.com', '7 Oak Mews'),
  (3, 'Carol Cooper', 'carol@example.com', '9 Ash Court')
ON CONFLICT (customer_id) DO NOTHING;

-- Explicit ids above do not move the identity sequences; move them past.
SELECT setval(pg_get_serial_sequence('venues', 'venue_id'), (SELECT max(venue_id) FROM venues));
SELECT setval(pg_get_serial_sequence('events', 'event_id'), (SELECT max(event_id) FROM events));
SELECT setval(pg_get_serial_sequence('customers', 'customer_id'), (SELECT max(customer_id) FROM customers));
