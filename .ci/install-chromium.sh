#!/usr/bin/env bash
# Install Debian's chromium for the headless screenshot test of a rendered report
# (tests/test_report_content.py). Idempotent and never fatal (.ci/apt-install.sh): without it the
# screenshot test skips with a reason and everything else still runs.
set -u
if [ -x /usr/bin/chromium ]; then
    echo "install-chromium: /usr/bin/chromium already present"
    exit 0
fi
exec bash "$(dirname "$0")/apt-install.sh" chromium "the report screenshot test"
