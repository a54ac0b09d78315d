# backup-guard image for users with Docker: the same root filesystem as `make image` (which needs no
# Docker daemon; see README "The image"), built by tools/image/build_image.py on Debian 12 and copied
# onto an empty base: the binary, exactly the shared libraries it loads and their loader, the CA
# bundle, the non-root user 65532, and no shell.
#   docker build -t backup-guard:0.1.0 \
#     --build-arg BG_REVISION=$(git rev-parse HEAD) --build-arg BG_SOURCE=<repository URL> .
#
# The base is pinned by digest: debian:bookworm-20260918, the multi-platform index digest that
# Docker's official-images bot recorded (docker-library/repo-info, repos/debian/remote).

FROM debian:bookworm-20260918@sha256:f37a335e82bca302e955fa39f9dfe28f1be618f016f8a2b56318e5a5111afc26 AS build
COPY tools/ensure-deps.sh /src/tools/ensure-deps.sh
# BG_BUILD_TESTS=OFF: the compiler and the libraries only, no GoogleTest, clang tools or Python venv.
RUN BG_BUILD_TESTS=OFF /src/tools/ensure-deps.sh && rm -rf /var/lib/apt/lists/*
COPY . /src
WORKDIR /src
# The build type every test suite runs (RelWithDebInfo); the debug info is stripped.
RUN cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBG_BUILD_TESTS=OFF \
 && ninja -C /build backup-guard \
 && strip /build/backup-guard \
 && python3 tools/image/build_image.py rootfs --binary /build/backup-guard --out /rootfs

FROM scratch
ARG BG_VERSION=0.1.0
ARG BG_REVISION=unknown
ARG BG_SOURCE=unknown
LABEL org.opencontainers.image.title="backup-guard" \
      org.opencontainers.image.version="$BG_VERSION" \
      org.opencontainers.image.revision="$BG_REVISION" \
      org.opencontainers.image.source="$BG_SOURCE"
COPY --from=build /rootfs/ /
USER 65532:65532
EXPOSE 9443 8080
ENTRYPOINT ["/backup-guard"]
