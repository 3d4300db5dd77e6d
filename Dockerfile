# conntrack-exporter container image.
#
#   podman build --network host -t conntrack-exporter .          (or docker build)
#   podman run -d --name conntrack-exporter --network host --read-only \
#     --cap-drop all --cap-add DAC_READ_SEARCH --cap-add SYSLOG \
#     --device /dev/kmsg:/dev/kmsg:r --security-opt no-new-privileges \
#     -v /proc:/host/proc:ro conntrack-exporter
#
# Run it in the host's network namespace (--network host, hostNetwork in
# Kubernetes): nf_conntrack_count and /proc/net/stat/nf_conntrack describe the
# network namespace of the reader. The host's /proc is mounted read-only at
# /host/proc, which the default arguments point at. See README, "Running in a
# container", for the capabilities each optional feature needs.
#
# NODE_IMAGE is the base of both stages: any Debian image with node and npm in
# /usr/local/bin, i.e. the official node:<LTS>-trixie-slim (Node.js 26 is the
# Active LTS line since October 2026; 24 also works), or a base made without a
# registry by scripts/build-base-image.sh
# (--build-arg NODE_IMAGE=localhost/conntrack-exporter-base:node26.10.0-trixie).
ARG NODE_IMAGE=docker.io/library/node:26-trixie-slim

# --- deps: every dependency, from the lockfile
FROM ${NODE_IMAGE} AS deps
WORKDIR /src
COPY package.json package-lock.json ./
# Behind a TLS-intercepting proxy, pass its CA without baking it into a layer:
#   --secret id=npm_ca,src=/etc/ssl/certs/ca-certificates.crt
RUN --mount=type=secret,id=npm_ca \
    if [ -s /run/secrets/npm_ca ]; then export NODE_EXTRA_CA_CERTS=/run/secrets/npm_ca; fi; \
    npm ci --ignore-scripts --no-audit --no-fund --loglevel=warn

# --- prod-deps: the same tree pruned to the runtime dependencies
FROM deps AS prod-deps
RUN npm prune --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=warn

# --- build: TypeScript compile (the only stage a source change rebuilds)
FROM deps AS build
COPY tsconfig.json tsconfig.build.json ./
COPY scripts/write-build-info.mjs scripts/
COPY src/ src/
ARG REVISION=unknown
RUN CONNTRACK_EXPORTER_REVISION="${REVISION}" npm run build \
 && find dist -name '*.map' -delete

# --- runtime: node, conntrack-tools, production node_modules and dist only
FROM ${NODE_IMAGE}

# conntrack-tools is the netlink fallback (`conntrack -S`, `conntrack -L`)
# for kernels without the /proc files. npm, npx, corepack and yarn are not
# needed at run time and are removed.
RUN set -eu; \
    if ! command -v conntrack >/dev/null; then \
      apt-get update -qq; \
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends conntrack >/dev/null; \
      rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb /var/cache/debconf/*-old \
        /var/log/apt /var/log/dpkg.log /var/log/alternatives.log; \
    fi; \
    rm -rf /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/corepack \
      /usr/local/bin/npm /usr/local/bin/npx /usr/local/bin/corepack \
      /usr/local/bin/yarn /usr/local/bin/yarnpkg /opt/yarn-*; \
    conntrack --version; node --version

WORKDIR /app
COPY --from=deps /src/package.json ./
COPY --from=prod-deps /src/node_modules/ node_modules/
COPY --from=build /src/dist/ dist/

# Declared here, after the slow steps, so a new revision reuses their layers.
ARG NODE_IMAGE
ARG VERSION=0.0.0-dev
ARG REVISION=unknown
ARG CREATED=1970-01-01T00:00:00Z
ARG SOURCE=""
LABEL org.opencontainers.image.title="conntrack-exporter" \
      org.opencontainers.image.description="Prometheus exporter for Linux netfilter connection tracking (nf_conntrack)" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.base.name="${NODE_IMAGE}"

# Files are root-owned and read-only to the exporter, which writes nothing:
# it runs with a read-only root filesystem and no writable volume.
USER 65534:65534
EXPOSE 9746
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "/app/dist/main.js"]
CMD ["--path.procfs=/host/proc"]
