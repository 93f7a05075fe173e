#!/usr/bin/env bash
# `make setup`: install everything the local stack needs. Idempotent; a warm run takes seconds.
#
# Expensive results live outside the clone, keyed by what determines them:
#   $INSTASHOP_CACHE/venvs/main-<hash>      requirements.txt (+ this clone's path, for the editable install)
#   $INSTASHOP_CACHE/venvs/superset-<hash>  superset/requirements.txt (+ path)
#   $INSTASHOP_CACHE/jars/<hash>            setup/maven/**/pom.xml
#   $INSTASHOP_CACHE/lib/<hash>             setup/spark/bind_loopback.c (compiled)
# and the clone links to them as .venv, .venv-superset, .jars and .lib.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${INSTASHOP_CACHE:-$HOME/.cache/instashop}
UV_VERSION=0.9.9
PYTHON=${PYTHON:-python3.11}
# gcc + libc6-dev: the Spark driver's loopback bind shim (setup/spark/bind_loopback.c).
DEBIAN_PACKAGES=(postgresql-15 redis-server openjdk-17-jdk-headless maven chromium gcc libc6-dev)

step() { printf '\033[1m==> %s\033[0m\n' "$*"; }

hash_of() { cat "$@" | sha256sum | cut -c1-16; }

install_debian_packages() {
  local missing=()
  for pkg in "${DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  if ((${#missing[@]} == 0)); then
    step "Debian packages present"
    return
  fi
  step "Installing Debian packages: ${missing[*]}"
  # Keep the packages' own services (a system Redis on 6379, a default PostgreSQL cluster) from
  # starting: our stack runs its own instances on the contract ports.
  local policy=/usr/sbin/policy-rc.d created_policy=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created_policy=1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  ((created_policy)) && rm -f "$policy"
  return 0
}

ensure_uv() {
  UV="$CACHE/tools/uv-$UV_VERSION/bin/uv"
  if [[ ! -x $UV ]]; then
    step "Installing uv $UV_VERSION (fast, exact installs from the lock files)"
    "$PYTHON" -m venv "$CACHE/tools/uv-$UV_VERSION"
    "$CACHE/tools/uv-$UV_VERSION/bin/pip" install -q "uv==$UV_VERSION"
  fi
}

# venv NAME LOCKFILE LINK [EDITABLE_DIR...]
ensure_venv() {
  local name=$1 lock=$2 link=$3
  shift 3
  local key venv manifests=()
  # An editable package's entry points are written at install time: its pyproject.toml is part of the key.
  for editable in "$@"; do [[ $editable == . ]] || manifests+=("$ROOT/$editable/pyproject.toml"); done
  key=$(printf '%s %s' "$ROOT" "$("$PYTHON" -V)" | cat - "$ROOT/$lock" "$ROOT/pyproject.toml" "${manifests[@]}" |
    sha256sum | cut -c1-16)
  venv="$CACHE/venvs/$name-$key"
  if [[ ! -f $venv/.complete ]]; then
    step "Creating the $name virtual environment from $lock"
    rm -rf "$venv"
    "$UV" venv -q --python "$PYTHON" "$venv"
    SSL_CERT_FILE=${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt} \
      "$UV" pip sync -q --native-tls --python "$venv/bin/python" "$ROOT/$lock"
    for editable in "$@"; do
      "$UV" pip install -q --no-deps --python "$venv/bin/python" -e "$ROOT/$editable"
    done
    touch "$venv/.complete"
  else
    step "The $name virtual environment is up to date ($venv)"
  fi
  ln -sfn "$venv" "$ROOT/$link"
}

ensure_jars() {
  local key dir
  key=$(hash_of "$ROOT"/setup/maven/pom.xml "$ROOT"/setup/maven/*/pom.xml)
  dir="$CACHE/jars/$key"
  if [[ ! -f $dir/.complete ]]; then
    step "Resolving Kafka, Kafka Connect, Debezium and the Spark Kafka connector from Maven Central"
    rm -rf "$dir"
    mvn -B -q -f "$ROOT/setup/maven/pom.xml" package -Djars.root="$dir"
    touch "$dir/.complete"
  else
    step "JVM jars are up to date ($dir)"
  fi
  ln -sfn "$dir" "$ROOT/.jars"
}

ensure_bind_shim() {
  local key dir
  key=$(hash_of "$ROOT"/setup/spark/bind_loopback.c)
  dir="$CACHE/lib/$key"
  if [[ ! -f $dir/.complete ]]; then
    step "Compiling the Spark driver's loopback bind shim"
    mkdir -p "$dir"
    gcc -shared -fPIC -O2 -Wall -o "$dir/bind_loopback.so" "$ROOT/setup/spark/bind_loopback.c" -ldl
    touch "$dir/.complete"
  fi
  ln -sfn "$dir" "$ROOT/.lib"
}

main() {
  local started=$SECONDS
  mkdir -p "$CACHE"
  install_debian_packages
  ensure_uv
  ensure_venv main requirements.txt .venv .
  # The live charts' shillelagh adapter, and `instashop` for its Redis key schema (instashop.live.metrics).
  ensure_venv superset superset/requirements.txt .venv-superset superset/instashop_live .
  ensure_jars
  ensure_bind_shim
  "$ROOT/.venv/bin/instashop" init-env
  step "Set-up done in $((SECONDS - started))s"
}

main "$@"
