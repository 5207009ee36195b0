#!/usr/bin/env bash
# Install the pjsua2 Python bindings (the test peers' SIP stack) into the
# project's environment, then check that they work.
#
# Usage: bash pjbuild/install.sh [PYTHON]
#   PYTHON  the venv's python (default: <repo>/.venv/bin/python; the venv is
#           created when that default does not exist yet)
#
# Idempotent: when the pinned wheel is already installed and the check passes,
# nothing is printed.
set -euo pipefail

# 2.15.1.post1, not 2.15.1: the plain 2.15.1 wheel bundles OpenSSL 1.0.2 without
# registering its digests, so MD5 digest authentication fails with PJ_ENOTSUP.
PJSUA2_SPEC="pjsua2-python==2.15.1.post1"
PJSUA2_VERSION="${PJSUA2_SPEC#*==}"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"

if [ "$#" -ge 1 ]; then
    PY="$1"
    if [ ! -x "$PY" ]; then
        echo "pjbuild/install.sh: $PY is not an executable python" >&2
        exit 1
    fi
else
    PY="$root/.venv/bin/python"
    if [ ! -x "$PY" ]; then
        python3 -m venv "$root/.venv"
    fi
fi

installed_version() {
    "$PY" -c 'import importlib.metadata as m; print(m.version("pjsua2-python"))' 2>/dev/null || true
}

fresh=0
if [ "$(installed_version)" != "$PJSUA2_VERSION" ]; then
    "$PY" -m pip install -q --disable-pip-version-check "$PJSUA2_SPEC"
    fresh=1
fi

# The wheel bundles OpenSSL and Kerberos; it still needs the system's
# libstdc++, libgcc_s and zlib. Install whichever of them the loader misses.
ext="$("$PY" -c 'import importlib.util, pathlib
spec = importlib.util.find_spec("pjsua2")
print(next(pathlib.Path(spec.origin).parent.glob("_pjsua2*.so")))')"
if command -v ldd >/dev/null; then
    missing_libs="$(ldd "$ext" | awk '/not found/ {print $1}')"
    if [ -n "$missing_libs" ]; then
        packages=()
        for lib in $missing_libs; do
            case "$lib" in
                libstdc++.so.*) packages+=(libstdc++6) ;;
                libgcc_s.so.*) packages+=(libgcc-s1) ;;
                libz.so.*) packages+=(zlib1g) ;;
                *) echo "pjbuild/install.sh: $ext needs $lib, which no known package provides" >&2 ;;
            esac
        done
        if [ "${#packages[@]}" -gt 0 ]; then
            if ! command -v apt-get >/dev/null; then
                echo "pjbuild/install.sh: please install: ${packages[*]}" >&2
                exit 1
            fi
            echo "pjbuild/install.sh: installing ${packages[*]}"
            apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
        fi
    fi
fi

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! result="$("$PY" "$here/check.py" 2>"$log")"; then
    cat "$log" >&2
    echo "pjbuild/install.sh: pjsua2 check failed" >&2
    exit 1
fi
if [ "$fresh" -eq 1 ]; then
    echo "pjbuild/install.sh: installed $PJSUA2_SPEC: $result"
fi
