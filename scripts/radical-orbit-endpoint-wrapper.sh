#!/bin/sh
# Start an ORBIT endpoint from a batch script, nohup or a fresh login shell: find the
# installation this script belongs to, run $RADICAL_ORBIT_SETUP (e.g. "module load
# python"), then exec the endpoint with the given arguments.
#
# sbatch and qsub run a *copy* of the script from a spool directory, so the script's own
# location may say nothing. The installation is looked for, in order, in:
#   $RADICAL_ORBIT_PREFIX (a bin directory or a checkout), the script's own directory,
#   the submitted script's path (SLURM: scontrol's Command=), then, after the setup,
#   radical-orbit-endpoint on PATH and finally a python3 that can import radical_orbit.
set -e
me=radical-orbit-endpoint-wrapper.sh
say() { echo "$me: $*" >&2; }
case "${1:-}" in
    -h|--help)
        cat <<USAGE
$me: run radical-orbit-endpoint from a batch script (sbatch, qsub), nohup or a
fresh login shell. It puts the installation it belongs to on PATH and PYTHONPATH
(a venv, a pip --user or system install, or a checkout; \$RADICAL_ORBIT_PREFIX names
one explicitly), runs the shell commands in \$RADICAL_ORBIT_SETUP first
(e.g. RADICAL_ORBIT_SETUP="module load python"), and exits 1 with one line if they
fail; then it runs the endpoint with the arguments given. Inside a batch job the
endpoint takes the role 'compute' and stops by itself when the job ends.
The endpoint's own options follow.

USAGE
        ;;
esac

# An installation: a directory holding radical-orbit-endpoint (a venv's or prefix's bin,
# ~/.local/bin) or a checkout (its scripts/ next to radical_orbit/).
installation() {
    d=$1
    [ -n "$d" ] && [ -d "$d" ] || return 1
    d=$(cd "$d" && pwd)
    if [ -f "$d/radical_orbit/__init__.py" ] && [ -d "$d/scripts" ]; then
        d="$d/scripts"
    fi
    [ -e "$d/radical-orbit-endpoint" ] || return 1
    echo "$d"
}

here=""
for candidate in "${RADICAL_ORBIT_PREFIX:-}" "${RADICAL_ORBIT_PREFIX:+$RADICAL_ORBIT_PREFIX/bin}" \
        "$(dirname "$0")"; do
    here=$(installation "$candidate") && break || here=""
done
if [ -z "$here" ] && [ -n "${SLURM_JOB_ID:-}" ] && command -v scontrol >/dev/null 2>&1; then
    submitted=$(scontrol show job -o "$SLURM_JOB_ID" 2>/dev/null | tr ' ' '\n' | sed -n 's/^Command=//p')
    [ -n "$submitted" ] && here=$(installation "$(dirname "$submitted")") || here=""
fi
if [ -n "$RADICAL_ORBIT_SETUP" ]; then
    # Under set -e a failing setup command ends the shell: say which, and exit 1.
    trap 'status=$?; say "the setup command failed (exit $status): RADICAL_ORBIT_SETUP=\"$RADICAL_ORBIT_SETUP\""; exit 1' EXIT
    eval "$RADICAL_ORBIT_SETUP"
    trap - EXIT
fi
if [ -z "$here" ] && command -v radical-orbit-endpoint >/dev/null 2>&1; then
    here=$(installation "$(dirname "$(command -v radical-orbit-endpoint)")") || here=""
fi

if [ -n "$here" ]; then
    PATH="$here:$PATH"
    export PATH
    if [ -f "$here/../radical_orbit/__init__.py" ]; then
        # a checkout: its package first on PYTHONPATH, run by the python3 on PATH
        PYTHONPATH="$(cd "$here/.." && pwd)${PYTHONPATH:+:$PYTHONPATH}"
        export PYTHONPATH
        exec "${RADICAL_ORBIT_PYTHON:-python3}" -m radical_orbit.endpoint "$@"
    fi
    for py in "$here/python3" "$here/python"; do
        # a venv: its own interpreter (which finds its site-packages by itself)
        [ -x "$py" ] && exec "$py" -m radical_orbit.endpoint "$@"
    done
    # pip --user or a system prefix: the console script names its interpreter
    exec "$here/radical-orbit-endpoint" "$@"
fi
py=${RADICAL_ORBIT_PYTHON:-python3}
if "$py" -c 'import radical_orbit' >/dev/null 2>&1; then
    exec "$py" -m radical_orbit.endpoint "$@"
fi
say "cannot find an ORBIT installation (no radical-orbit-endpoint next to this script, in \$RADICAL_ORBIT_PREFIX or on PATH, and $py cannot import radical_orbit): set RADICAL_ORBIT_PREFIX to its bin directory, or load its environment in RADICAL_ORBIT_SETUP"
exit 1
