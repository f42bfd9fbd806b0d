#!/usr/bin/env bash
# Installs the Debian packages crpipe needs to build and test, if any is missing.
set -euo pipefail
pkgs=(build-essential cmake pkg-config
      libprotobuf-dev protobuf-compiler libcapnp-dev capnproto libuv1-dev libnl-3-dev
      libgtest-dev python3 iproute2 procps psmisc time util-linux clang libclang-rt-14-dev libbpf-dev
      liburing-dev
      bpftool)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "crpipe: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
