#!/usr/bin/env bash
# Install Debian's Chromium so tests/test_panel_browser.py can drive the operator panel in a real
# browser through Playwright (executable_path=/usr/bin/chromium; Playwright's own browser download
# is never used). Idempotent and never fatal: without apt, root/sudo or network the browser tests
# skip with a reason and everything else still runs.
set -u
. "$(dirname "$0")/apt.sh"

if [ -x /usr/bin/chromium ]; then
    echo "install-chromium: /usr/bin/chromium already present"
    exit 0
fi
if apt_install install-chromium "browser tests" chromium fonts-dejavu-core; then
    echo "install-chromium: installed $(/usr/bin/chromium --version 2>/dev/null || echo chromium)"
fi
exit 0
