# One image per function, one for the Kafka trigger, one for the outbox relay,
# one for the waiting room's admitter:
#   docker build --build-arg FUNCTION=get-event -t boxoffice/get-event .
#   docker build --target trigger -t boxoffice/trigger .
#   docker build --target relay -t boxoffice/relay .
#   docker build --target admitter -t boxoffice/admitter .
# The build stage compiles TypeScript; the runtime has production
# dependencies and compiled code only: no dev tools, no tests.
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY shared ./shared
COPY functions ./functions
COPY trigger ./trigger
COPY relay ./relay
COPY admitter ./admitter
RUN npm run build

FROM node:20-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund

FROM node:20-bookworm-slim AS runtime
ENV NODE_ENV=production PORT=8080
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY migrations ./migrations
COPY package.json ./
USER node
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s \
  CMD node -e "fetch('http://127.0.0.1:8080/_/health').then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))"

# The trigger: consumes the booking topic, delivers to consume-order.
FROM runtime AS trigger
CMD ["node", "dist/trigger/main.js"]

# The outbox relay: publishes accepted bookings to Kafka.
FROM runtime AS relay
CMD ["node", "dist/relay/main.js"]

# The admitter: lets customers through the waiting rooms, on a timer; for a
# cron trigger, override the command with `node dist/admitter/main.js --once`.
FROM runtime AS admitter
CMD ["node", "dist/admitter/main.js"]

# A function (the default target); `node dist/shared/migrate.js` in it migrates a database.
FROM runtime AS function
ARG FUNCTION
ENV FUNCTION_NAME=${FUNCTION}
CMD ["node", "dist/shared/run.js"]
