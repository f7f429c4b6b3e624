-- What an operator sets on an event besides its name, venue, capacity and
-- price: the most tickets one customer may hold (NULL: no limit), and the
-- on-sale settings a waiting room runs the sale by (all four or none).
ALTER TABLE events
  ADD COLUMN max_tickets_per_customer integer
    CONSTRAINT events_max_tickets_per_customer_positive CHECK (max_tickets_per_customer > 0),
  ADD COLUMN on_sale_starts_at timestamptz,
  ADD COLUMN on_sale_admit_per_minute integer
    CONSTRAINT events_on_sale_admit_per_minute_positive CHECK (on_sale_admit_per_minute >= 1),
  ADD COLUMN on_sale_max_active integer
    CONSTRAINT events_on_sale_max_active_positive CHECK (on_sale_max_active >= 1),
  ADD COLUMN on_sale_pass_minutes integer
    CONSTRAINT events_on_sale_pass_minutes_range CHECK (on_sale_pass_minutes BETWEEN 1 AND 60),
  ADD CONSTRAINT events_on_sale_all_or_none CHECK (
    num_nulls(on_sale_starts_at, on_sale_admit_per_minute, on_sale_max_active, on_sale_pass_minutes) IN (0, 4));
