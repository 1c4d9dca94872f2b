# syntax=docker/dockerfile:1
#
# The MiniTwit image: `minitwit` (the server) and `minitwit-replay` (the admin tool), built from
# this workspace and run as an unprivileged user on Debian bookworm-slim.
#
#   docker build -t minitwit .            (compose.yaml builds it as ${MINITWIT_IMAGE:-minitwit:latest})
#   docker compose exec minitwit minitwit-replay status
#
# The image needs a database: give it DATABASE_URL or DATABASE_URL_FILE. (Without one the server
# would start its embedded PostgreSQL, whose binaries are deliberately not in this image.)

ARG RUST_VERSION=1.95

# ------------------------------------------------------------------------------------- build
FROM rust:${RUST_VERSION}-bookworm AS build
# The commit, for minitwit_build_info{git_sha} (read at compile time; .git is not in the
# build context): docker build --build-arg MINITWIT_GIT_SHA=$(git rev-parse --short HEAD) .
ARG MINITWIT_GIT_SHA=unknown
ENV MINITWIT_GIT_SHA=${MINITWIT_GIT_SHA}
WORKDIR /src
COPY . .
# BuildKit cache mounts keep downloaded crates and compiled dependencies between builds; the
# binaries are copied out of the cached target directory in the same step. --locked: exactly
# the versions in Cargo.lock. SQL migrations, templates and static files are compiled in.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p api -p replay-tool --bins \
 && install -D -m 0755 -t /out target/release/minitwit target/release/minitwit-replay

# --------------------------------------------------------------------------------------- run
FROM debian:bookworm-slim
# /backups: compose's backup volume, which when new takes the owner of the folder it is
# mounted on.
RUN groupadd --system --gid 10001 minitwit \
 && useradd --system --uid 10001 --gid minitwit --home-dir /var/lib/minitwit --create-home \
      --shell /usr/sbin/nologin minitwit \
 && install -d -o minitwit -g minitwit -m 0700 /backups
COPY --from=build /out/ /usr/local/bin/

# Listen on every interface inside the container (the defaults are loopback only); JSON logs.
ENV MINITWIT_API_ADDR=0.0.0.0:5001 \
    MINITWIT_WEB_ADDR=0.0.0.0:5000 \
    LOG_FORMAT=json
USER minitwit:minitwit
WORKDIR /var/lib/minitwit
EXPOSE 5000 5001

# SIGTERM: drain requests in flight, stop projectors between batches, exit.
STOPSIGNAL SIGTERM
# `minitwit healthcheck --live` exits 0 when /health/live on MINITWIT_API_ADDR answers 200:
# the process serves (it answers only after migrations and projection set-up). Liveness, not
# readiness, because an orchestrator replaces unhealthy containers and readiness also fails on
# trouble every replica shares (see compose.yaml). start-period: migrations and set-up.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD ["minitwit", "healthcheck", "--live"]

ENTRYPOINT ["minitwit"]
