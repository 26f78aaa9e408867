#!/usr/bin/env bash
# Install Debian's chromium for the headless screenshot test of a rendered report
# (tests/test_report_content.py). Idempotent and never fatal: without apt, root/sudo or network the
# screenshot test skips with a reason and everything else still runs.
set -u

if [ -x /usr/bin/chromium ]; then
    echo "install-chromium: /usr/bin/chromium already present"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-chromium: apt-get not available; the report screenshot test will be skipped"
    exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "install-chromium: not root and no passwordless sudo; the report screenshot test will be skipped"
        exit 0
    fi
fi
export DEBIAN_FRONTEND=noninteractive
if ! $SUDO apt-get update -qq >/dev/null 2>&1; then
    echo "install-chromium: apt-get update failed; the report screenshot test will be skipped"
    exit 0
fi
if ! $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1; then
    echo "install-chromium: apt-get install chromium failed; the report screenshot test will be skipped"
    exit 0
fi
echo "install-chromium: installed $(/usr/bin/chromium --version 2>/dev/null)"
exit 0
