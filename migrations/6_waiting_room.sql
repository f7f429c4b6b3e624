-- The waiting room of an event with on-sale settings (4_operator.sql): each
-- customer's one place in its line, and the turn they are given once
-- admitted. Nothing here is deleted: a place, its admission and how its
-- pass ended are the record of how the sale went.

-- Arrivals after the start are served in this order, across every event.
CREATE SEQUENCE queue_arrivals;

-- line_key orders the line: those who joined before the start hold a
-- negative random key (the shuffle), later arrivals the next queue_arrivals
-- number, so every early joiner comes before every late one. Ties (two equal
-- random keys) fall to customer_id. A pass is active while it is admitted,
-- unused and unexpired; expiry_counted marks an expired, unused pass the
-- admitter has counted, so each is counted once whatever number run.
CREATE TABLE queue_entries (
  event_id       integer     NOT NULL REFERENCES events (event_id),
  customer_id    integer     NOT NULL REFERENCES customers (customer_id),
  joined_at      timestamptz NOT NULL DEFAULT now(),
  line_key       bigint      NOT NULL,
  admitted_at    timestamptz,
  expires_at     timestamptz,
  used_at        timestamptz,
  expiry_counted boolean     NOT NULL DEFAULT false,
  CONSTRAINT queue_entries_one_per_customer PRIMARY KEY (event_id, customer_id),
  CONSTRAINT queue_entries_admitted_with_expiry CHECK ((admitted_at IS NULL) = (expires_at IS NULL)),
  CONSTRAINT queue_entries_expiry_after_admission CHECK (expires_at > admitted_at),
  CONSTRAINT queue_entries_used_once_admitted CHECK (used_at IS NULL OR admitted_at IS NOT NULL),
  CONSTRAINT queue_entries_counted_unused CHECK (NOT expiry_counted OR (admitted_at IS NOT NULL AND used_at IS NULL))
);

-- Those still waiting, in line order: the next to admit, and a place (the
-- entries ahead of it) counted within one event.
CREATE INDEX queue_entries_waiting ON queue_entries (event_id, line_key, customer_id) WHERE admitted_at IS NULL;
-- Passes neither used nor counted as expired: the active ones of an event,
-- and those that have just expired.
CREATE INDEX queue_entries_open_passes ON queue_entries (event_id, expires_at) WHERE admitted_at IS NOT NULL AND used_at IS NULL AND NOT expiry_counted;

-- The admission state of an event's room, one row per started sale: credit
-- is the admissions the configured rate has allowed and not yet spent, as of
-- credited_at. An admitter locks the row for its tick (others skip it), so
-- admitters on any number of machines admit one event's line one at a time.
CREATE TABLE waiting_rooms (
  event_id    integer          PRIMARY KEY REFERENCES events (event_id),
  credit      double precision NOT NULL DEFAULT 0 CONSTRAINT waiting_rooms_credit_not_negative CHECK (credit >= 0),
  credited_at timestamptz      NOT NULL
);

-- The admitter's look for sales that have started.
CREATE INDEX events_on_sale_starts_at ON events (on_sale_starts_at) WHERE on_sale_starts_at IS NOT NULL;
