# medic's image: one static binary in FROM scratch, CA certificates, a non-root user, state in
# the /data volume (so the root filesystem can be read-only), and a HEALTHCHECK that asks the
# running daemon's own /health.
#
# Two ways to get the binary, one runtime stage (runtime-base) they share:
#
#   From source, in the official Rust image (what users build; needs Docker Hub and crates.io):
#     docker build -t medic .
#
#   Prebuilt, offline (what the tests here use: no image can be pulled): scripts/build-images.sh
#   builds the static binary on the host and builds the target `prebuilt` from a context that
#   holds it under docker/medic/prebuilt/.
#
# The stage order is deliberate: Docker's classic builder builds every stage before the target,
# so the stages the offline path needs come first and never reach rust:1. The default target
# (the last stage) is the from-source image.

# ---- runtime settings shared by both paths --------------------------------------------------
FROM scratch AS runtime-base
LABEL org.opencontainers.image.title="medic" \
      org.opencontainers.image.description="A Docker-native sidecar that probes, heals and reports on a docker compose stack" \
      org.opencontainers.image.licenses="MIT"
ENV PATH=/usr/local/bin \
    MEDIC_DATA_DIR=/data \
    MEDIC_LISTEN=0.0.0.0:8080 \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
# 65532 is the conventional "nonroot" user. It reaches the Docker socket through the socket's
# group, added at run time (compose: group_add: ["${DOCKER_GID}"]; see the README).
USER 65532:65532
EXPOSE 8080
VOLUME ["/data"]
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/medic", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/medic"]
CMD ["run"]

# ---- offline path: binary prebuilt by scripts/build-images.sh --------------------------------
FROM runtime-base AS prebuilt
COPY docker/medic/prebuilt/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --chown=65532:65532 docker/medic/prebuilt/data/ /data/
COPY docker/medic/prebuilt/medic /usr/local/bin/medic

# ---- from source: the official Rust image ----------------------------------------------------
FROM rust:1 AS builder
WORKDIR /src
COPY . .
# glibc linked statically (static-pie), so the binary runs in FROM scratch.
RUN set -eux; \
    triple="$(rustc -vV | sed -n 's/^host: //p')"; \
    RUSTFLAGS='-C target-feature=+crt-static' cargo build --release -p medic --target "$triple"; \
    mkdir -p /out/data; \
    cp "target/$triple/release/medic" /out/medic

FROM runtime-base AS medic
COPY --from=builder /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=builder --chown=65532:65532 /out/data/ /data/
COPY --from=builder /out/medic /usr/local/bin/medic
