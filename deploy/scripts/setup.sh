#!/usr/bin/env bash
# Installs what netqoe's build, tests and demo need on a Debian/Ubuntu machine, when missing:
# nats-server, the PostgreSQL server binaries, schemathesis (for the API contract test), and
# for the deployment tests (crates/netqoe-deploy-check): promtool (Debian's prometheus
# package), kubernetes-validate (pip; ships the Kubernetes schemas, so it works offline),
# systemd-analyze, and chromium (headless screenshot of the report). Quick when all is present.
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
if ! command -v promtool >/dev/null 2>&1; then
  need_apt+=(prometheus)
fi
if ! command -v systemd-analyze >/dev/null 2>&1; then
  need_apt+=(systemd)
fi
if ! command -v chromium >/dev/null 2>&1; then
  need_apt+=(chromium)
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
      prometheus) $sudo systemctl stop prometheus prometheus-node-exporter 2>/dev/null || true ;;
    esac
  done
else
  echo "setup: nats-server, PostgreSQL server binaries, promtool, systemd-analyze and chromium present"
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

# kubernetes-validate checks rendered manifests against the Kubernetes schemas it ships
# (no network needed); it brings PyYAML, which the deployment tests also use.
if ! python3 -c 'import kubernetes_validate, yaml' >/dev/null 2>&1 || ! command -v kubernetes-validate >/dev/null 2>&1; then
  echo "setup: installing kubernetes-validate with pip"
  python3 -m pip install --quiet --disable-pip-version-check 'kubernetes-validate>=1.30'
else
  echo "setup: kubernetes-validate present"
fi

# kubectl (for `kubectl kustomize`) has no Debian package; the deployment tests need it.
if ! command -v kubectl >/dev/null 2>&1; then
  echo "setup: kubectl not found: the Kubernetes deployment tests need it (kubectl kustomize)" >&2
fi
