# marathon-lb (Rust) container image: the original's layout (/marathon-lb, entrypoint with the
# `sse`/`poll` first argument), HAProxy 2.6 from Debian, marathon-lb as PID 1.
#
#   podman build -t marathon-lb .        (or docker build; the full multi-stage build)
#   podman run --net host marathon-lb sse -m http://marathon.mesos:8080 --group external
#
# Build arguments:
#   BASE        the runtime base image (default debian:bookworm-slim: HAProxy 2.6)
#   RUST_IMAGE  the builder image (default rust:1-bookworm)
# Targets: `runtime` (default, last) builds the binary in the builder stage; `prebuilt` takes
# an already built `dist/marathon-lb` from the build context instead (scripts/image uses it:
# no builder image is pulled).

ARG BASE=debian:bookworm-slim
ARG RUST_IMAGE=rust:1-bookworm

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
RUN cargo build --locked --profile dist --bin marathon-lb \
 && mkdir -p /out/dist && cp target/dist/marathon-lb /out/dist/marathon-lb

FROM ${BASE} AS base
# HAProxy 2.6 and CA certificates (Marathon over TLS); skipped when the base already has them.
RUN if ! command -v haproxy >/dev/null || [ ! -e /etc/ssl/certs/ca-certificates.crt ]; then \
      apt-get update \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends haproxy ca-certificates \
      && rm -rf /var/lib/apt/lists/*; \
    fi \
 && mkdir -p /marathon-lb /var/run/haproxy /var/state/haproxy /var/run/marathon-lb
# The scripts the built-in HAPROXY_HEAD loads (the binary also writes them when missing).
COPY lua/*.lua /marathon-lb/
WORKDIR /marathon-lb
# 80/443: the shared HTTP(S) frontends; 9090: stats, /_haproxy_health_check; 9091: app-id
# routing; 10000-10100: service ports (the original's).
EXPOSE 80 443 9090 9091
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/marathon-lb"]
CMD ["sse", "--health-check", "--group", "external"]

FROM base AS prebuilt
COPY dist/marathon-lb /usr/bin/marathon-lb
RUN ["/usr/bin/marathon-lb", "--version"]

FROM base AS runtime
COPY --from=build /out/dist/marathon-lb /usr/bin/marathon-lb
RUN ["/usr/bin/marathon-lb", "--version"]
