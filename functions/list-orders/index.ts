import { mayActFor } from '../../shared/auth.js';
import { pool } from '../../shared/db.js';
import { problems } from '../../shared/errors.js';
import { httpFunction } from '../../shared/http-function.js';
import { Decimal } from '../../shared/json.js';
import { idSchema } from '../../shared/schemas.js';

interface OrdersQuery {
  userId?: number;
  limit: number;
  offset: number;
}

interface OrderRow {
  /** bigint: pg hands it over as a string, and it stays one. */
  order_id: string;
  booking_id: string;
  customer_id: number;
  event_id: number;
  quantity: number;
  total: string;
  placed_at: Date;
  status: 'ACTIVE' | 'CANCELLED';
  cancelled_at: Date | null;
  refund: string | null;
}

/** GET /api/v1/orders?userId=: a customer's orders (the caller's own by default), newest first, a page at a time. */
export default httpFunction<Record<string, never>, OrdersQuery>({
  name: 'list-orders',
  route: { method: 'GET', path: '/api/v1/orders' },
  access: 'token',
  schemas: {
    query: {
      type: 'object',
      properties: {
        userId: idSchema,
        limit: { type: 'integer', minimum: 1, maximum: 500, default: 50 },
        offset: { type: 'integer', minimum: 0, maximum: 1000000, default: 0 },
      },
      additionalProperties: false,
    },
  },
  async handle({ query, principal }) {
    // Without userId, a customer's own orders.
    const userId = query.userId ?? principal.customerId;
    if (userId === undefined) throw problems.validation([{ name: 'query/userId', reason: 'is required for a token linked to no customer' }]);
    mayActFor(principal, userId);

    // An unknown customer is a 404, so a mistyped id is never an empty list.
    const customer = await pool.query('SELECT 1 FROM customers WHERE customer_id = $1', [userId]);
    if (customer.rowCount === 0) throw problems.notFound(`Customer ${userId} does not exist`);

    const { rows } = await pool.query<OrderRow>(
      `SELECT order_id, booking_id, customer_id, event_id, quantity, total, placed_at, status, cancelled_at, refund
         FROM orders
        WHERE customer_id = $1
        ORDER BY placed_at DESC, order_id DESC
        LIMIT $2 OFFSET $3`,
      [userId, query.limit, query.offset],
    );
    return {
      body: rows.map((order) => ({
        orderId: order.order_id,
        bookingId: order.booking_id,
        userId: order.customer_id,
        eventId: order.event_id,
        quantity: order.quantity,
        total: new Decimal(order.total),
        placedAt: order.placed_at.toISOString(),
        // The original's fields, then what cancellation added: a cancelled order says so, and what is refunded.
        status: order.status,
        ...(order.cancelled_at && { cancelledAt: order.cancelled_at.toISOString(), refund: new Decimal(order.refund!) }),
      })),
    };
  },
});
