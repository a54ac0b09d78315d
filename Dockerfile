# backup-guard image: build on Debian 12 with the same packages as `make` (tools/ensure-deps.sh),
# run on distroless (no shell, no package manager) as the non-root user 65532.
#   docker build -t backup-guard:0.1.0 .
#
# The binary links a few shared libraries that distroless/cc does not carry (cpp-httplib,
# prometheus-cpp, yaml-cpp, zlib, brotli); the build stage copies exactly those, and checks that
# the binary resolves every library against distroless' own set plus the copied ones.

FROM debian:12 AS build
COPY tools/ensure-deps.sh /src/tools/ensure-deps.sh
RUN /src/tools/ensure-deps.sh && rm -rf /var/lib/apt/lists/*
COPY . /src
WORKDIR /src
# The build type `make` uses (RelWithDebInfo); the debug info is stripped from the image.
RUN cmake -S . -B /build -G Ninja \
 && ninja -C /build backup-guard \
 && strip /build/backup-guard
# Libraries for the runtime stage, in the same multiarch directory as on Debian. Anything else the
# binary needs must be part of distroless/cc (glibc, libstdc++, libgcc, libssl3): checked with ldd.
RUN set -eu; \
    libdir=/usr/lib/$(gcc -print-multiarch); \
    mkdir -p "/runtime$libdir"; \
    for lib in libcpp-httplib.so.0.11 libprometheus-cpp-core.so.1.0 libyaml-cpp.so.0.7 libz.so.1 \
               libbrotlidec.so.1 libbrotlienc.so.1 libbrotlicommon.so.1; do \
      path=$(ldconfig -p | awk -v l="$lib" '$1 == l { print $NF; exit }'); \
      [ -n "$path" ] || { echo "missing $lib" >&2; exit 1; }; \
      cp -L "$path" "/runtime$libdir/$lib"; \
    done; \
    ldd /build/backup-guard >/tmp/ldd.txt; \
    awk '/=>/ { print $1 }' /tmp/ldd.txt | while read -r lib; do \
      case $lib in \
        libc.so.*|libm.so.*|libstdc++.so.*|libgcc_s.so.*|libssl.so.3|libcrypto.so.3) ;; \
        *) [ -e "/runtime$libdir/$lib" ] || { echo "runtime library $lib is not shipped" >&2; exit 1; } ;; \
      esac; \
    done; \
    cp /build/backup-guard /runtime/backup-guard

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /runtime/ /
USER 65532:65532
EXPOSE 9443 8080
ENTRYPOINT ["/backup-guard"]
