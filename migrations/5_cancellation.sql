-- Cancellation: a PENDING or CONFIRMED booking becomes CANCELLED, for good.
-- Its tickets go back to the event, its order (if it has one) is cancelled
-- with the amount to refund, and a booking.cancelled message goes out
-- through the outbox, all in one transaction (functions/cancel-booking).
ALTER TABLE bookings DROP CONSTRAINT bookings_status_check;
ALTER TABLE bookings
  ADD COLUMN cancelled_at timestamptz,
  ADD CONSTRAINT bookings_status_known CHECK (status IN ('PENDING', 'CONFIRMED', 'FAILED', 'CANCELLED')),
  ADD CONSTRAINT bookings_cancelled_when CHECK ((status = 'CANCELLED') = (cancelled_at IS NOT NULL));

-- An order is ACTIVE until its booking is cancelled; then it keeps what was
-- to be refunded (the whole total: no fee is kept).
ALTER TABLE orders
  ADD COLUMN status text NOT NULL DEFAULT 'ACTIVE' CONSTRAINT orders_status_known CHECK (status IN ('ACTIVE', 'CANCELLED')),
  ADD COLUMN cancelled_at timestamptz,
  ADD COLUMN refund numeric(14,2),
  ADD CONSTRAINT orders_cancelled_when CHECK ((status = 'CANCELLED') = (cancelled_at IS NOT NULL)),
  ADD CONSTRAINT orders_refund_when_cancelled CHECK ((status = 'CANCELLED') = (refund IS NOT NULL)),
  ADD CONSTRAINT orders_refund_within_total CHECK (refund BETWEEN 0 AND total);

-- A status change a CHECK cannot see, since it compares the row with its old
-- self: CANCELLED is final (a late confirmation must not revive a booking
-- whose tickets are gone), and only a booking that holds tickets, PENDING or
-- CONFIRMED, can be cancelled (a FAILED one holds none to give back).
CREATE FUNCTION bookings_status_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF OLD.status = 'CANCELLED' OR (NEW.status = 'CANCELLED' AND OLD.status NOT IN ('PENDING', 'CONFIRMED')) THEN
    RAISE EXCEPTION 'booking % may not go from % to %', OLD.booking_id, OLD.status, NEW.status
      USING ERRCODE = 'check_violation', CONSTRAINT = 'bookings_cancelled_is_final';
  END IF;
  RETURN NEW;
END
$$;

CREATE TRIGGER bookings_cancelled_is_final BEFORE UPDATE OF status ON bookings
  FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION bookings_status_change();

-- No ACTIVE order for a CANCELLED booking. It spans two tables, so no CHECK
-- can hold it: a constraint trigger checks it at commit, from either side
-- (a booking cancelled, an order made or revived). Deferred, so that a
-- transaction may change the two rows in either order. The booking row is
-- locked FOR SHARE first: an order is made under only a key-share lock of
-- its booking, which a cancelling UPDATE does not wait for, so two such
-- transactions could otherwise each commit without seeing the other's row.
-- With it, the later of the two waits for the earlier and sees its row.
CREATE FUNCTION orders_none_active_for_cancelled_booking() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  booking_status text;
BEGIN
  SELECT status INTO booking_status FROM bookings WHERE booking_id = NEW.booking_id FOR SHARE;
  IF booking_status = 'CANCELLED' AND EXISTS (SELECT 1 FROM orders WHERE booking_id = NEW.booking_id AND status = 'ACTIVE') THEN
    RAISE EXCEPTION 'booking % is cancelled but its order is active', NEW.booking_id
      USING ERRCODE = 'check_violation', CONSTRAINT = 'orders_none_active_for_cancelled_booking';
  END IF;
  RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER bookings_cancelled_without_active_order AFTER UPDATE OF status ON bookings
  DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW WHEN (NEW.status = 'CANCELLED') EXECUTE FUNCTION orders_none_active_for_cancelled_booking();

CREATE CONSTRAINT TRIGGER orders_active_only_for_live_booking AFTER INSERT OR UPDATE OF status, booking_id ON orders
  DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW WHEN (NEW.status = 'ACTIVE') EXECUTE FUNCTION orders_none_active_for_cancelled_booking();

-- The message a cancellation sends on the `booking` topic, keyed by booking
-- id like the booking's own message, so that a partition carries a booking's
-- acceptance before its cancellation. `type` tells it apart (an accepted
-- booking's message has none); the order's id and refund when it had an
-- order, else null and 0: nothing was charged.
CREATE FUNCTION booking_cancelled_message(b bookings, o orders) RETURNS json LANGUAGE sql IMMUTABLE AS $$
  SELECT json_build_object(
    'type', 'booking.cancelled',
    'bookingId', b.booking_id,
    'userId', b.customer_id,
    'eventId', b.event_id,
    'ticketCount', b.ticket_count,
    'totalPrice', b.total_price,
    'cancelledAt', b.cancelled_at,
    'orderId', o.order_id::text,
    'refund', coalesce(o.refund, 0.00))
$$;
