#!/bin/sh
# Start an ORBIT endpoint from a batch script: use the installation this script
# belongs to, run $RADICAL_ORBIT_SETUP (e.g. "module load python"), then exec the
# endpoint with the given arguments.
set -e
here=$(cd "$(dirname "$0")" && pwd)
PATH="$here:$PATH"
export PATH
if [ -n "$RADICAL_ORBIT_SETUP" ]; then
    eval "$RADICAL_ORBIT_SETUP"
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
