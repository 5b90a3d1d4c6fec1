#!/usr/bin/env bash
# Switchboard developer entry point. The README's two commands:
#   scripts/dev.sh run    install what is missing, build, start Redis, run the daemon
#   scripts/dev.sh test   install what is missing, build, run every test through CTest
# Other verbs: deps, build, asan (sanitizer build + tests), bench, redis (install it if
# missing; use the one on 127.0.0.1:6379, else start one).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

# Debian 12 packages the build and the tests need. libphonenumber-dev is not installed: it pulls
# Boost 1.74, which removes Boost 1.81; its headers are unpacked into third_party/ instead.
PACKAGES=(g++ cmake make pkg-config ccache
  libboost1.81-dev libboost-url1.81-dev libboost-json1.81-dev libssl-dev
  libsimdjson-dev libhiredis-dev libsqlite3-dev libspdlog-dev libfmt-dev doctest-dev
  libgmime-3.0-dev libidn2-dev libpcre2-dev libtomlplusplus-dev libphonenumber8 libprotobuf-dev libabsl-dev
  libjemalloc-dev redis-server redis-tools dovecot-imapd python3-aiosmtpd isync curl openssl)

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# Installs those of the given packages that are not installed yet.
install_missing() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    say "installing: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
}

deps() {
  install_missing "${PACKAGES[@]}"
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

# A Redis on 127.0.0.1:6379: the one already there, else one of our own with its append-only
# file on (data in var/redis). On Debian with systemd, installing the redis-server package
# starts the distribution's Redis on 6379 (/etc/redis/redis.conf: appendonly no), so `run` on a
# fresh machine usually finds that one. It is a system service: say so, and warn when it keeps
# no append-only file, but leave it as it is.
redis() {
  if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
    install_missing redis-server redis-tools
  fi
  local pong
  if pong=$(redis-cli -p 6379 ping 2>&1); then
    say "using the redis-server already on 127.0.0.1:6379"
    if [ "$pong" != "PONG" ]; then
      echo "warning: it answers PING with \"$pong\"; give the daemon its password in [redis] url" >&2
      return 0
    fi
    local aof
    aof=$(redis-cli -p 6379 config get appendonly 2>/dev/null | sed -n 2p)
    if [ "$aof" = "no" ]; then
      cat >&2 <<'WARN'
warning: this Redis runs without its append-only file (CONFIG GET appendonly: no). If it
  restarts, it comes back with its last snapshot: the daemon queues the open interactions again
  from its database (nothing acknowledged is lost), but the claims, acks and transfers made
  since that snapshot are undone and claimed items are handed out again (README: "Run Redis
  with appendonly yes"). To turn it on: redis-cli -p 6379 config set appendonly yes (until it
  restarts), and appendonly yes in its configuration file (Debian: /etc/redis/redis.conf).
WARN
    elif [ "$aof" != "yes" ]; then
      echo "warning: could not read its appendonly setting (CONFIG GET refused?)" >&2
    fi
    return 0
  fi
  say "starting redis-server on 127.0.0.1:6379 (data in var/redis, append-only file on)"
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
    sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
