# One image for everything boxoffice runs; what a container is comes from how
# it is deployed, not from how it was built:
#   docker build -t boxoffice/boxoffice:latest .
#   a function:  FUNCTION_NAME=get-event, command `node dist/shared/run.js` (the default)
#   the trigger: command `node dist/trigger/main.js`
#   the relay:   command `node dist/relay/main.js`
#   the admitter: command `node dist/admitter/main.js` (`--once` for a cron tick)
#   migrations:  command `node dist/shared/migrate.js` (`--demo` adds the demo data)
# The build stage compiles TypeScript; the runtime has production
# dependencies and compiled code only: no dev tools, no tests.
#
# Node 24, the Active LTS line, pinned by the digest of the official
# node:24-bookworm-slim image (the multi-platform index, Node 24.18.1, as
# docker-library/repo-info records it); the code runs on Node 20 and up
# (package.json engines). Move the digest and tag together.
ARG NODE_IMAGE=node:24-bookworm-slim@sha256:235600a8101ab264e117b1768e925532262668dc9b581ef1dd7d96ced463b8e7

FROM ${NODE_IMAGE} AS build
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

FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund

FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production PORT=8080
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY migrations ./migrations
COPY package.json ./
USER node
EXPOSE 8080
# Readiness on whatever PORT the deployment sets: healthy means able to serve
# (the database reachable), which is what compose's depends_on waits for.
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s \
  CMD ["node", "-e", "fetch(`http://127.0.0.1:${process.env.PORT || 8080}/_/ready`).then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
CMD ["node", "dist/shared/run.js"]
