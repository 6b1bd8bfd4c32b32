#!/usr/bin/env bash
# Builds the images the tests (and an offline demo) run, without pulling anything: release
# binaries are built here with glibc linked statically, then copied into FROM scratch images.
#
#   scripts/build-images.sh            build every image set
#   scripts/build-images.sh demo       only the demo stack: medic-demo/app, medic-demo/worker
#   scripts/build-images.sh medic      only medic itself: medic:latest
#
# Every image is labelled medic.test=true. Idempotent and quick when nothing changed: cargo
# rebuilds nothing, the staged binaries are rewritten only when they differ, and docker reuses
# its layer cache.
#
# cargo runs with its own target dir (target/static, or $MEDIC_STATIC_TARGET_DIR), so a test
# can call this script from inside `cargo test` without waiting on that build's lock.
#
# Adding an image set (e.g. medic itself): write a build_<set> function like build_demo and add
# the set's name to IMAGE_SETS.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET_DIR="${MEDIC_STATIC_TARGET_DIR:-$ROOT/target/static}"
CONTEXTS="$TARGET_DIR/contexts"
IMAGE_LABEL="medic.test=true"
IMAGE_SETS=(demo medic)

log() { echo "build-images: $*" >&2; }
die() {
  log "ERROR: $*"
  exit 1
}

# The host's target triple (x86_64-unknown-linux-gnu here): static-pie binaries for it run in
# FROM scratch images on the same machine.
host_triple() {
  rustc -vV | sed -n 's/^host: //p'
}

# build_static PACKAGE...: release build of the packages' binaries, statically linked.
build_static() {
  local args=() package
  for package in "$@"; do
    args+=(-p "$package")
  done
  log "cargo build --release ${args[*]} (static, $TRIPLE, target dir $TARGET_DIR)"
  # Flags inherited from a calling cargo would change the build's fingerprint or leak the
  # caller's target dir; this build sets its own.
  env -u CARGO_ENCODED_RUSTFLAGS -u CARGO_BUILD_RUSTFLAGS -u CARGO_BUILD_TARGET \
    RUSTFLAGS='-C target-feature=+crt-static' CARGO_TARGET_DIR="$TARGET_DIR" \
    cargo build --release --target "$TRIPLE" "${args[@]}"
}

# static_binary NAME: where build_static put the binary NAME.
static_binary() {
  echo "$TARGET_DIR/$TRIPLE/release/$1"
}

# stage FILE DEST: copy FILE to DEST unless identical, so docker sees an unchanged context.
stage() {
  mkdir -p "$(dirname "$2")"
  if ! cmp -s "$1" "$2"; then
    cp "$1" "$2.tmp"
    mv "$2.tmp" "$2"
  fi
}

# build_image TAG DOCKERFILE TARGET CONTEXT
build_image() {
  local tag="$1" dockerfile="$2" target="$3" context="$4" id
  id="$(docker build --quiet --file "$dockerfile" --target "$target" \
    --label "$IMAGE_LABEL" --tag "$tag" "$context")" || die "docker build of $tag failed"
  log "built $tag (${id#sha256:})"
}

# The demo stack: docker/demo.Dockerfile's offline stages over the prebuilt binaries.
build_demo() {
  build_static demo
  local context="$CONTEXTS/demo"
  stage "$(static_binary demo-app)" "$context/docker/demo/prebuilt/app/demo-app"
  stage "$(static_binary demo-worker)" "$context/docker/demo/prebuilt/worker/demo-worker"
  build_image medic-demo/app:latest "$ROOT/docker/demo.Dockerfile" app-prebuilt "$context"
  build_image medic-demo/worker:latest "$ROOT/docker/demo.Dockerfile" worker-prebuilt "$context"
}

# medic itself: the root Dockerfile's offline stage over the prebuilt binary.
build_medic() {
  build_static medic
  local context="$CONTEXTS/medic"
  stage "$(static_binary medic)" "$context/docker/medic/prebuilt/medic"
  stage /etc/ssl/certs/ca-certificates.crt "$context/docker/medic/prebuilt/ca-certificates.crt"
  mkdir -p "$context/docker/medic/prebuilt/data"
  build_image medic:latest "$ROOT/Dockerfile" prebuilt "$context"
}

main() {
  local sets=("$@") set
  if [[ ${#sets[@]} -eq 0 ]]; then
    sets=("${IMAGE_SETS[@]}")
  fi
  for set in "${sets[@]}"; do
    declare -F "build_$set" >/dev/null || die "unknown image set '$set' (known: ${IMAGE_SETS[*]})"
  done
  command -v cargo >/dev/null || die "cargo is not installed"
  command -v docker >/dev/null || die "docker is not installed (scripts/testenv.sh up installs it)"
  docker info >/dev/null 2>&1 || die "the Docker Engine does not answer (scripts/testenv.sh up starts one)"
  TRIPLE="${MEDIC_STATIC_TRIPLE:-$(host_triple)}"
  [[ -n "$TRIPLE" ]] || die "cannot tell the host's target triple from rustc -vV"
  cd "$ROOT"
  for set in "${sets[@]}"; do
    "build_$set"
  done
}

main "$@"
