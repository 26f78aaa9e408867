#!/usr/bin/env bash
# Install Debian's PostgreSQL server binaries so tests/test_history.py can start a throwaway
# cluster (it finds /usr/lib/postgresql/*/bin/initdb). Idempotent and never fatal (.ci/apt-install.sh):
# without apt, root/sudo or network the PostgreSQL tests skip with a reason and everything else still runs.
# No system cluster is created or started: the tests run their own in a temporary directory.
set -u

if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    echo "install-postgres: PostgreSQL server binaries already present"
    exit 0
fi
# Do not let the package create (and start) the default system cluster.
if [ ! -e /etc/postgresql-common/createcluster.conf ]; then
    SUDO=""
    [ "$(id -u)" = "0" ] || SUDO="sudo -n"
    if [ -z "$SUDO" ] || { command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; }; then
        $SUDO mkdir -p /etc/postgresql-common &&
            echo "create_main_cluster = false" | $SUDO tee /etc/postgresql-common/createcluster.conf >/dev/null
    fi
fi
exec bash "$(dirname "$0")/apt-install.sh" postgresql "PostgreSQL history tests"
