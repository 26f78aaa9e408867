# Sourced by the .ci/install-*.sh scripts: install Debian packages if possible, never fatally.
# apt_install LABEL WHAT_SKIPS PACKAGE... -> 0 when installed; otherwise prints why and returns 1
# (the caller exits 0: the tests that need the package skip with a reason).
apt_install() {
    local label="$1" skips="$2"
    shift 2
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "$label: apt-get not available; $skips will be skipped"
        return 1
    fi
    local sudo=""
    if [ "$(id -u)" != "0" ]; then
        if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
            sudo="sudo -n"
        else
            echo "$label: not root and no passwordless sudo; $skips will be skipped"
            return 1
        fi
    fi
    [ -n "${APT_BEFORE:-}" ] && $sudo sh -c "$APT_BEFORE"
    export DEBIAN_FRONTEND=noninteractive
    if ! $sudo apt-get update -qq >/dev/null 2>&1; then
        echo "$label: apt-get update failed; $skips will be skipped"
        return 1
    fi
    if ! $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1; then
        echo "$label: apt-get install $* failed; $skips will be skipped"
        return 1
    fi
    return 0
}
