#!/bin/sh
# Start an ORBIT endpoint from a batch script: use the installation this script
# belongs to, run $RADICAL_ORBIT_SETUP (e.g. "module load python"), then exec the
# endpoint with the given arguments.
set -e
me=$(basename "$0")
case "${1:-}" in
    -h|--help)
        cat <<USAGE
$me: run radical-orbit-endpoint from a batch script or a fresh login shell.
It puts the installation it belongs to on PATH and PYTHONPATH, runs the shell
commands in \$RADICAL_ORBIT_SETUP first (e.g. RADICAL_ORBIT_SETUP="module load python"),
and exits 1 with a message if they fail; then it runs the endpoint with the
arguments given. The endpoint's own options follow.

USAGE
        ;;
esac
here=$(cd "$(dirname "$0")" && pwd)
PATH="$here:$PATH"
export PATH
if [ -n "$RADICAL_ORBIT_SETUP" ]; then
    # Under set -e a failing setup command ends the shell: say which, and exit 1.
    trap 'status=$?; echo "$me: the setup command failed (exit $status): RADICAL_ORBIT_SETUP=\"$RADICAL_ORBIT_SETUP\"" >&2; exit 1' EXIT
    eval "$RADICAL_ORBIT_SETUP"
    trap - EXIT
fi
if [ -x "$here/python" ] || [ -x "$here/python3" ]; then
    py=$( [ -x "$here/python3" ] && echo "$here/python3" || echo "$here/python" )
    site=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' 2>/dev/null || true)
else
    py=python3
    site=""
fi
if [ -f "$here/../radical_orbit/__init__.py" ]; then
    site="$(cd "$here/.." && pwd)"
fi
if [ -n "$site" ]; then
    PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
    export PYTHONPATH
fi
if command -v radical-orbit-endpoint >/dev/null 2>&1 && [ -z "${here##*bin}" ]; then
    exec radical-orbit-endpoint "$@"
fi
exec "$py" -m radical_orbit.endpoint "$@"
