# syntax=docker/dockerfile:1
#
# One image for every long-running txstream process and its one-shot commands:
#
#   docker run IMAGE consume            the warehouse consumer group
#   docker run IMAGE schedule           the leader-elected scheduler
#   docker run IMAGE alerts forward     the alert forwarder
#   docker run IMAGE init               topics, schemas and fact tables (idempotent)
#   docker run IMAGE views deploy       materialized views
#
# The sources run as they are: Node 24 strips the TypeScript types itself, so there is no build step
# and no compiler in the image. BASE must provide Node 24 at /usr/local/bin/node with npm (as the
# official node images do) on a Debian with apt; `npm run test:image` builds such a base from Debian
# packages and the pinned `node` npm package when no registry is reachable.
ARG BASE=node:24-bookworm-slim

# --- production dependencies only -----------------------------------------------------------------
FROM ${BASE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: no production dependency needs its install script (protobufjs' and core-js' only
# print notices; package.json's allowScripts says the same). The cache is left behind in this stage.
# Type declarations and source maps are never loaded at run time (about 28 MB).
# Behind a TLS-intercepting proxy, give npm its CA bundle as a build secret
# (`--secret id=npm_ca,src=/etc/ssl/certs/ca-certificates.crt`): used by this step only, kept in no layer.
RUN --mount=type=secret,id=npm_ca \
  if [ -s /run/secrets/npm_ca ]; then export NODE_EXTRA_CA_CERTS=/run/secrets/npm_ca; fi \
  && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --no-update-notifier \
  && find node_modules -type f \( -name '*.map' -o -name '*.d.ts' -o -name '*.d.mts' -o -name '*.d.cts' \) -delete

# --- runtime ---------------------------------------------------------------------------------------
FROM ${BASE}
# tini as PID 1: the kernel gives PID 1 no default signal actions, so a command without its own
# SIGTERM handler (init, views deploy, query) would ignore `docker stop` until SIGKILL; tini forwards
# the signal to node and reaps any zombie. consume, schedule and alerts forward handle SIGTERM
# themselves: stop fetching, flush, commit, leave the group, exit 0.
# npm, npx and corepack are not needed at run time; removing them drops their dependencies from the
# attack surface that image scanners report.
RUN apt-get update \
  && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends tini \
  && apt-get clean \
  && rm -rf /var/lib/apt/lists/* /var/log/apt /var/log/dpkg.log \
  && rm -rf /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/corepack \
    /usr/local/bin/npm /usr/local/bin/npx /usr/local/bin/corepack /opt/yarn-* /usr/local/bin/yarn /usr/local/bin/yarnpkg \
  && groupadd --gid 10001 txstream \
  && useradd --uid 10001 --gid txstream --home-dir /app --no-create-home --shell /usr/sbin/nologin txstream

WORKDIR /app
# Owned by root and read-only for the process: nothing under /app is written at run time, so the
# container also runs with a read-only root filesystem.
COPY --from=deps /app/node_modules ./node_modules
COPY package.json package-lock.json alerts.yaml ./
COPY bin ./bin
COPY schemas ./schemas
COPY sql ./sql
COPY src ./src

# METRICS_HOST: /metrics, /healthz and /readyz must be reachable from outside the container.
ENV NODE_ENV=production \
  METRICS_HOST=0.0.0.0 \
  METRICS_PORT=9464
EXPOSE 9464
# Numeric, so Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/node", "--disable-warning=TimeoutNegativeWarning", "/app/bin/txstream.js"]
CMD ["--help"]
