#!/usr/bin/env bash
# apt-install.sh PACKAGE WHAT: install one Debian package for optional tests, never fatal.
# WHAT names what is skipped without it (printed). Exit 0 always: without apt, root/sudo or network the
# dependent tests skip with a reason and everything else still runs. Sourced by the install-*.sh scripts.
set -u
PACKAGE="$1"
WHAT="$2"
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-$PACKAGE: apt-get not available; $WHAT will be skipped"
    exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "install-$PACKAGE: not root and no passwordless sudo; $WHAT will be skipped"
        exit 0
    fi
fi
export DEBIAN_FRONTEND=noninteractive
if ! $SUDO apt-get update -qq >/dev/null 2>&1; then
    echo "install-$PACKAGE: apt-get update failed; $WHAT will be skipped"
    exit 0
fi
if ! $SUDO apt-get install -y -qq --no-install-recommends "$PACKAGE" >/dev/null 2>&1; then
    echo "install-$PACKAGE: apt-get install $PACKAGE failed; $WHAT will be skipped"
    exit 0
fi
echo "install-$PACKAGE: installed"
exit 0
