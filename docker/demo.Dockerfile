# The demo stack's images: demo-app and demo-worker, each one static binary in a FROM scratch
# image (no shell, no libc, nothing to patch), running as an unprivileged user.
#
# Two ways to get the binaries, one set of runtime settings (the *-base stages):
#
#   From source, in the official Rust image: what users run (needs Docker Hub and crates.io).
#   Run from the repository root:
#     docker build -f docker/demo.Dockerfile --target app    -t medic-demo/app:latest .
#     docker build -f docker/demo.Dockerfile --target worker -t medic-demo/worker:latest .
#
#   Prebuilt, offline: what the tests use (no image can be pulled there). scripts/build-images.sh
#   builds the static binaries on the host and builds the targets app-prebuilt and
#   worker-prebuilt from a context holding nothing but them, under docker/demo/prebuilt/.
#
# Always pass --target. The stage order is deliberate: Docker's classic builder (Debian's
# docker.io, docker-compose v1) builds every stage before the target, so the prebuilt stages
# come before the rust:1 stage (the offline path never reaches it), and they copy from
# docker/demo/prebuilt/, which exists in the repository too (the from-source path passes them
# harmlessly). BuildKit builds only the stages the target needs.

# ---- runtime settings shared by both paths -------------------------------------------------
FROM scratch AS app-base
ENV PATH=/usr/local/bin APP_PORT=8000 RUST_LOG=info
EXPOSE 8000
USER 65534:65534
# A scratch image has no curl or wget: the binary asks its own /health.
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/demo-app", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/demo-app"]

FROM scratch AS worker-base
ENV PATH=/usr/local/bin WORKER_ADMIN_PORT=8001 RUST_LOG=info
EXPOSE 8001
USER 65534:65534
# Stays healthy under every fault switch, as a stuck real worker would: Docker cannot see
# these failures, medic's probes can.
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/demo-worker", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/demo-worker"]

# ---- offline path: binaries prebuilt by scripts/build-images.sh -----------------------------
FROM app-base AS app-prebuilt
COPY docker/demo/prebuilt/app/ /usr/local/bin/

FROM worker-base AS worker-prebuilt
COPY docker/demo/prebuilt/worker/ /usr/local/bin/

# ---- from source: the official Rust image --------------------------------------------------
FROM rust:1 AS builder
WORKDIR /src
COPY . .
# glibc linked statically (static-pie), so the binaries run in FROM scratch.
RUN set -eux; \
    triple="$(rustc -vV | sed -n 's/^host: //p')"; \
    RUSTFLAGS='-C target-feature=+crt-static' \
        cargo build --release -p demo --target "$triple"; \
    mkdir -p /out; \
    cp "target/$triple/release/demo-app" "target/$triple/release/demo-worker" /out/

FROM app-base AS app
COPY --from=builder /out/demo-app /usr/local/bin/demo-app

FROM worker-base AS worker
COPY --from=builder /out/demo-worker /usr/local/bin/demo-worker
