#!/usr/bin/env bash
# Install Debian's PostgreSQL server binaries so tests/test_history.py can start a throwaway
# cluster (it finds /usr/lib/postgresql/*/bin/initdb). Idempotent and never fatal: without apt,
# root/sudo or network the PostgreSQL tests skip with a reason and everything else still runs.
# No system cluster is created or started: the tests run their own in a temporary directory.
set -u

if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    echo "install-postgres: PostgreSQL server binaries already present"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-postgres: apt-get not available; PostgreSQL history tests will be skipped"
    exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "install-postgres: not root and no passwordless sudo; PostgreSQL history tests will be skipped"
        exit 0
    fi
fi
# Do not let the package create (and start) the default system cluster.
if [ ! -e /etc/postgresql-common/createcluster.conf ]; then
    $SUDO mkdir -p /etc/postgresql-common &&
        echo "create_main_cluster = false" | $SUDO tee /etc/postgresql-common/createcluster.conf >/dev/null
fi
export DEBIAN_FRONTEND=noninteractive
if ! $SUDO apt-get update -qq >/dev/null 2>&1; then
    echo "install-postgres: apt-get update failed; PostgreSQL history tests will be skipped"
    exit 0
fi
if ! $SUDO apt-get install -y -qq --no-install-recommends postgresql >/dev/null 2>&1; then
    echo "install-postgres: apt-get install postgresql failed; PostgreSQL history tests will be skipped"
    exit 0
fi
echo "install-postgres: installed $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | tr '\n' ' ')"
exit 0
