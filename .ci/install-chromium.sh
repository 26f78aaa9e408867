#!/usr/bin/env bash
# Install Debian's Chromium so tests/service/test_panel_browser.py can drive the operator panel in a
# real browser through Playwright (executable_path=/usr/bin/chromium; Playwright's own browser
# download is not used). Idempotent and never fatal: without apt, root/sudo or network the browser
# tests skip with a reason and everything else still runs.
set -u

if [ -x /usr/bin/chromium ]; then
    echo "install-chromium: /usr/bin/chromium already present"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-chromium: apt-get not available; browser tests will be skipped"
    exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "install-chromium: not root and no passwordless sudo; browser tests will be skipped"
        exit 0
    fi
fi
export DEBIAN_FRONTEND=noninteractive
if ! $SUDO apt-get update -qq >/dev/null 2>&1; then
    echo "install-chromium: apt-get update failed; browser tests will be skipped"
    exit 0
fi
if ! $SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null 2>&1; then
    echo "install-chromium: apt-get install chromium failed; browser tests will be skipped"
    exit 0
fi
echo "install-chromium: installed $(/usr/bin/chromium --version 2>/dev/null || echo chromium)"
exit 0
