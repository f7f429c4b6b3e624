-- The outbox relay is its own process. It claims rows with a lease instead of
-- holding row locks while it talks to Kafka: a relay that dies mid-send
-- leaves its rows to the next relay once the lease runs out.
ALTER TABLE outbox ADD COLUMN claimed_until timestamptz;

-- Every insert into the outbox wakes the relays at commit (LISTEN outbox),
-- whoever wrote it: a booking, the re-drive of a stuck one. One
-- notification per statement; Postgres folds equal ones of a transaction.
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('outbox', '');
  RETURN NULL;
END
$$;

CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
  FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();

-- The message an accepted booking sends on the `booking` topic: the original
-- four fields plus the booking id, money as an exact JSON number. Defined
-- once, here, for book and for the re-drive alike.
CREATE FUNCTION booking_message(b bookings) RETURNS json LANGUAGE sql IMMUTABLE AS $$
  SELECT json_build_object(
    'bookingId', b.booking_id,
    'userId', b.customer_id,
    'eventId', b.event_id,
    'ticketCount', b.ticket_count,
    'totalPrice', b.total_price)
$$;

-- A booking still PENDING long after it was accepted is re-driven: its
-- message is published again (consume-order is idempotent). redriven_at
-- spaces the re-drives out.
ALTER TABLE bookings ADD COLUMN redriven_at timestamptz;
CREATE INDEX bookings_pending ON bookings (created_at) WHERE status = 'PENDING';
CREATE INDEX outbox_unpublished_key ON outbox (message_key) WHERE published_at IS NULL;
