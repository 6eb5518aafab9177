#!/usr/bin/env bash
# Download the Python wheels the GPU machine lacks (Zeus and what it needs) into .whl/, for
# scripts/requests-check.sh to install there (that machine has no network). Run here, once.
set -eu
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo /.whl/ >>.git/info/exclude
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl zeus==0.16.0 pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 \
  typing-inspection==0.4.5 typing-extensions==4.16.0 tyro==1.0.17 docstring-parser==0.18.0 \
  shtab==1.13.0 typeguard==4.6.1 amdsmi==7.0.2
