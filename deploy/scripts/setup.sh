#!/usr/bin/env bash
# Installs what netqoe's build, tests and demo need on a Debian/Ubuntu machine, when missing:
# nats-server, the PostgreSQL server binaries, and schemathesis (for the API contract test).
set -euo pipefail

need_apt=()
if ! command -v nats-server >/dev/null 2>&1 && [ ! -x /usr/sbin/nats-server ]; then
  need_apt+=(nats-server)
fi
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
  need_apt+=(postgresql)
fi
if ! command -v curl >/dev/null 2>&1; then
  need_apt+=(curl)
fi

if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]} with apt-get"
  sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  # The packaged services are not needed: netqoe's tests and demo run their own servers.
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  # Debian starts the packaged services on install; stop only those this script just
  # installed, so that anything that was already running is left alone.
  for pkg in "${need_apt[@]}"; do
    case "$pkg" in
      postgresql) $sudo pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n1)" main stop 2>/dev/null || true ;;
    esac
  done
else
  echo "setup: nats-server and PostgreSQL server binaries present"
fi

# schemathesis 3.39 breaks with hypothesis 6.120 and later ('many' object has no attribute
# 'more'), so both are pinned.
if ! python3 - >/dev/null 2>&1 <<'PY'
import schemathesis, hypothesis
assert schemathesis.__version__.startswith("3.")
assert tuple(int(x) for x in hypothesis.__version__.split(".")[:2]) < (6, 120)
PY
then
  echo "setup: installing schemathesis with pip"
  python3 -m pip install --quiet --disable-pip-version-check 'schemathesis>=3.39,<4' 'hypothesis>=6.84,<6.120'
else
  echo "setup: schemathesis present"
fi
