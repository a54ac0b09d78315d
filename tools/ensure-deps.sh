#!/usr/bin/env bash
# Installs the Debian packages the build and the tests need, only when one is missing.
set -euo pipefail
# BG_BUILD_TESTS=OFF installs only what the binary and its image need (the Dockerfile's build stage).
packages=(
  build-essential cmake ninja-build pkg-config
  libcpp-httplib-dev libssl-dev nlohmann-json3-dev prometheus-cpp-dev zlib1g-dev
  libyaml-cpp-dev
  ca-certificates python3
)
if [ "${BG_BUILD_TESTS:-ON}" != OFF ]; then
  packages+=(
    googletest libgtest-dev libgmock-dev
    clang-format clang-tidy
    curl openssl python3-venv
    libfaketime
  )
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "ensure-deps: installing ${missing[*]}"
  if [ "$(id -u)" != 0 ]; then
    echo "ensure-deps: missing packages and not root; install them: ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
