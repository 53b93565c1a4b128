#!/usr/bin/env bash
# Install what Doxa needs on Debian, and nothing that is already there:
#   1. Debian packages (PostgreSQL, Mosquitto, Chromium for the browser tests, build tools),
#   2. TimescaleDB (Debian's binary package where the configured suites have one, otherwise built
#      once from Debian's own source package of the newer suite, see DEVELOPERS.md),
#   3. the virtualenv .venv with Doxa installed editable (redone only when pyproject.toml changes).
# Works as root or as a sudo-capable user. A second run installs nothing and takes about a second.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'bootstrap: %s\n' "$*"; }
log=$(mktemp /tmp/doxa-bootstrap.XXXXXX.log)
# Run a noisy step quietly; on failure show its output and stop.
quiet() { "$@" >>"$log" 2>&1 || { tail -n 40 "$log"; say "failed: $* (full log: $log)"; exit 1; }; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

. /etc/os-release
case "${VERSION_CODENAME:-}" in
  bookworm) PG_MAJOR=15 ;;
  trixie) PG_MAJOR=17 ;;
  *) PG_MAJOR=$(ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -n 1); PG_MAJOR=${PG_MAJOR:-15} ;;
esac
PG_CONFIG=/usr/lib/postgresql/$PG_MAJOR/bin/pg_config

# ---- 1. Debian packages -------------------------------------------------------------------
want=(postgresql-$PG_MAJOR postgresql-client-$PG_MAJOR mosquitto mosquitto-clients chromium
      fonts-dejavu-core python3-venv ca-certificates prometheus)  # prometheus: promtool (tests)
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
apt_updated=0
apt_update() { [ "$apt_updated" = 1 ] || { quiet as_root apt-get update; apt_updated=1; }; }
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  apt_update
  quiet as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  if [[ " ${missing[*]} " == *" prometheus "* ]]; then
    # Only promtool is wanted (make test checks the alert rules): no Prometheus server running.
    if [ -d /run/systemd/system ]; then
      as_root systemctl disable --now prometheus >>"$log" 2>&1 || true
    else
      as_root service prometheus stop >>"$log" 2>&1 || true
      as_root update-rc.d prometheus disable >>"$log" 2>&1 || true
    fi
  fi
fi

# ---- 2. TimescaleDB ----------------------------------------------------------------------
ts_installed() { [ -f "/usr/share/postgresql/$PG_MAJOR/extension/timescaledb.control" ]; }
if ! ts_installed; then
  apt_update
  if apt-cache show "postgresql-$PG_MAJOR-timescaledb" >/dev/null 2>&1; then
    say "installing postgresql-$PG_MAJOR-timescaledb"
    quiet as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "postgresql-$PG_MAJOR-timescaledb"
  else
    say "building TimescaleDB (Apache licence) from Debian's trixie source package"
    quiet as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "postgresql-server-dev-$PG_MAJOR" cmake gcc make libc6-dev libssl-dev dpkg-dev
    work=$(mktemp -d /tmp/doxa-timescaledb.XXXXXX)
    trap 'rm -rf "$work"' EXIT
    src=/etc/apt/sources.list.d/debian.sources
    uri=$(awk '/^URIs:/{print $2; exit}' "$src")
    keyring=$(awk '/^Signed-By:/{print $2; exit}' "$src")
    mkdir -p "$work/lists/partial" "$work/src"
    echo "deb-src [signed-by=${keyring:-/usr/share/keyrings/debian-archive-keyring.gpg}] ${uri:-http://deb.debian.org/debian} trixie main" \
      > "$work/trixie-src.list"
    aptopts=(-o "Dir::Etc::sourcelist=$work/trixie-src.list" -o "Dir::Etc::sourceparts=-"
             -o "Dir::State::Lists=$work/lists" -o "APT::Get::List-Cleanup=0")
    chmod 755 "$work"; chown -R _apt "$work/lists" "$work/src" 2>/dev/null || true
    quiet as_root apt-get "${aptopts[@]}" update
    (cd "$work/src" && quiet as_root apt-get "${aptopts[@]}" source --download-only timescaledb)
    tarball=$(ls "$work"/src/timescaledb_*.orig.tar.* | head -n 1)
    mkdir "$work/build" && tar -xf "$tarball" -C "$work/build" --strip-components=1
    quiet cmake -S "$work/build" -B "$work/build/build" -DPG_CONFIG="$PG_CONFIG" -DAPACHE_ONLY=1 \
      -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF -DUSE_TELEMETRY=OFF -DWARNINGS_AS_ERRORS=OFF
    quiet make -C "$work/build/build" -j"$(nproc)"
    quiet as_root make -C "$work/build/build" install
  fi
  ts_installed || { say "TimescaleDB did not install"; exit 1; }
fi

# ---- 3. virtualenv --------------------------------------------------------------------------
PY=${PYTHON:-python3}
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { say "Python 3.11 or newer is needed ($PY is $("$PY" -V 2>&1))"; exit 1; }
stamp=.venv/.doxa-installed
want_stamp=$(cat pyproject.toml | sha256sum | cut -c1-16)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want_stamp" ]; then
  say "preparing .venv"
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  quiet .venv/bin/python -m pip install --upgrade pip setuptools
  quiet .venv/bin/python -m pip install -e '.[test]'
  echo "$want_stamp" > "$stamp"
fi
# Message catalogues are compiled from source so the site never ships stale .mo files.
if [ -d lookup_web/translations ]; then
  quiet .venv/bin/pybabel compile -d lookup_web/translations
fi
rm -f "$log"
