// Apart from kafka.ts so that functions which only name the topic in their
// outbox rows (book, cancel-booking) do not load kafkajs (about 14 MB).

/**
 * The topic accepted bookings are published to, and where poison messages
 * go. BOOKING_TOPIC renames both (tests give each run its own).
 */
export const topics = {
  get booking(): string {
    return process.env.BOOKING_TOPIC || 'booking';
  },
  get bookingDeadLetter(): string {
    return `${topics.booking}.dead-letter`;
  },
};

