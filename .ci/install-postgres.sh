#!/usr/bin/env bash
# Install Debian's PostgreSQL server binaries so tests/test_history.py can start a throwaway
# cluster (it finds /usr/lib/postgresql/*/bin/initdb). Idempotent and never fatal: without apt,
# root/sudo or network the PostgreSQL tests skip with a reason and everything else still runs.
# No system cluster is created or started: the tests run their own in a temporary directory.
set -u
. "$(dirname "$0")/apt.sh"

if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    echo "install-postgres: PostgreSQL server binaries already present"
    exit 0
fi
# Do not let the package create (and start) the default system cluster.
if [ ! -e /etc/postgresql-common/createcluster.conf ]; then
    APT_BEFORE='mkdir -p /etc/postgresql-common && echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.conf'
fi
if apt_install install-postgres "PostgreSQL history tests" postgresql; then
    echo "install-postgres: installed $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | tr '\n' ' ')"
fi
exit 0
