#!/usr/bin/env bash
# Installs the Debian 12 packages wattlens needs to build and test (clang-19 and LLVM 19 for the
# LLVM pass and the CUDA kernels; Python's venv for the test that reads the Parquet export with
# DuckDB; Chromium for the test that opens the HTML report in a headless browser). Idempotent, and
# silent when everything is already installed.
set -euo pipefail
pkgs=(clang-19 llvm-19 llvm-19-dev libpolly-19-dev libzstd-dev zlib1g-dev libffi-dev pkg-config
  python3 python3-venv chromium)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -ne 0 ] && sudo=sudo
echo "wattlens setup: installing ${missing[*]} (apt-get)" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
