#!/usr/bin/env bash
# Switchboard developer entry point. The README's two commands:
#   scripts/dev.sh run    install what is missing, build, start Redis, run the daemon
#   scripts/dev.sh test   install what is missing, build, run every test through CTest
# Other verbs: deps, build, asan (sanitizer build + tests), bench, redis.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

# Debian 12 packages the build and the tests need. libphonenumber-dev is not installed: it pulls
# Boost 1.74, which removes Boost 1.81; its headers are unpacked into third_party/ instead.
PACKAGES=(g++ cmake make pkg-config ccache
  libboost1.81-dev libboost-url1.81-dev libboost-json1.81-dev libssl-dev
  libsimdjson-dev libhiredis-dev libsqlite3-dev libspdlog-dev libfmt-dev doctest-dev
  libgmime-3.0-dev libpcre2-dev libtomlplusplus-dev libphonenumber8 libprotobuf-dev libabsl-dev
  libjemalloc-dev redis-server redis-tools dovecot-imapd python3-aiosmtpd isync curl openssl)

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

deps() {
  local missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    say "installing: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
  phonenumber_headers
}

# Headers of libphonenumber (8.12, matching the runtime package) unpacked into third_party/.
phonenumber_headers() {
  local dest="$ROOT/third_party/phonenumber"
  [ -f "$dest/usr/include/phonenumbers/phonenumberutil.h" ] && return 0
  say "unpacking libphonenumber headers into third_party/phonenumber"
  local tmp
  tmp=$(mktemp -d)
  chmod 755 "$tmp"  # apt-get download drops privileges to _apt
  (cd "$tmp" && apt-get download -qq "libphonenumber-dev=$(dpkg-query -W -f='${Version}' libphonenumber8)")
  mkdir -p "$dest"
  dpkg -x "$tmp"/libphonenumber-dev_*.deb "$dest"
  rm -rf "$tmp"
}

build() {
  say "building (build/)"
  cmake --preset release >/dev/null
  cmake --build --preset release
}

redis() {
  if redis-cli -p 6379 ping >/dev/null 2>&1; then
    return 0
  fi
  say "starting redis-server on 127.0.0.1:6379 (data in var/redis)"
  mkdir -p var/redis
  redis-server --bind 127.0.0.1 --port 6379 --dir "$ROOT/var/redis" --daemonize yes \
    --logfile "$ROOT/var/redis/redis.log" --appendonly yes >/dev/null
  for _ in $(seq 50); do redis-cli -p 6379 ping >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "redis-server did not start; see var/redis/redis.log" >&2
  exit 1
}

case "${1:-}" in
  deps) deps ;;
  build) deps; build ;;
  redis) redis ;;
  run)
    deps; build; redis
    mkdir -p var
    say "switchboard run --config config/switchboard.example.toml"
    exec build/switchboard run --config config/switchboard.example.toml
    ;;
  test)
    deps; build
    say "running the test suite"
    ctest --preset release -j2 --timeout 300
    ;;
  asan)
    deps
    cmake --preset asan >/dev/null
    cmake --build --preset asan
    ctest --preset asan -j2 --timeout 600
    ;;
  bench)
    deps; build
    cmake --build --preset release --target benches
    shift
    for b in build/bench/bench_*; do "$b" "$@"; done
    ;;
  *)
    sed -n '2,5p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
