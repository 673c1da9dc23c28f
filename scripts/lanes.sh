# shellcheck shell=bash
# Shared by scripts/setup, test, develop, simulate and check_newest: where the
# lanes live and how to run a command inside one.
#
#   min     Home Assistant 2025.4.4 on Python 3.13 (a venv on this machine)
#   latest  Home Assistant 2026.10.4 on Python >= 3.14.2: a venv when such a
#           Python is on PATH, otherwise a Debian forky root (debootstrap)
#           entered with chroot in a private mount namespace.
#   newest  the newest Home Assistant release (requirements_newest.txt), no test
#           plugin: scripts/check_newest runs it as a real process. Built like
#           latest (a venv next to it, or /opt/venv-newest in the same forky root).

REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LANES_DIR="$REPO_DIR/.lanes"
FORKY_ROOT="$LANES_DIR/latest/forky"
# Bump when the way a lane is built changes, so old lanes are rebuilt.
LANE_LAYOUT_VERSION=1

die() { echo "error: $*" >&2; exit 1; }
say() { echo "==> $*" >&2; }

# Print the path of a Python whose version is >= $1 and < $2 (both X.Y.Z).
_python_in_range() {
    local low=$1 high=$2 candidate
    local candidates=()
    for name in python3.14 python3.13 python3; do
        command -v "$name" >/dev/null 2>&1 && candidates+=("$(command -v "$name")")
    done
    local pyenv_root
    pyenv_root=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")
    for candidate in "$pyenv_root"/versions/3.1[34]*/bin/python3; do
        [ -x "$candidate" ] && candidates+=("$candidate")
    done
    for candidate in "${candidates[@]}"; do
        if "$candidate" - "$low" "$high" <<'PY' 2>/dev/null; then
import sys
low, high = (tuple(int(p) for p in v.split(".")) for v in sys.argv[1:3])
sys.exit(0 if low <= sys.version_info[:3] < high else 1)
PY
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

min_python() { _python_in_range 3.13.0 3.14.0; }
host_latest_python() { _python_in_range 3.14.2 3.15.0; }

# How the latest lane runs on this machine: "venv" or "forky".
latest_lane_kind() {
    if [ -f "$LANES_DIR/latest/kind" ]; then
        cat "$LANES_DIR/latest/kind"
    elif host_latest_python >/dev/null; then
        echo venv
    else
        echo forky
    fi
}

lane_venv() {
    case "$1" in
        min) echo "$LANES_DIR/min/venv" ;;
        latest)
            if [ "$(latest_lane_kind)" = forky ]; then echo /opt/venv; else echo "$LANES_DIR/latest/venv"; fi ;;
        newest)
            if [ "$(latest_lane_kind)" = forky ]; then echo /opt/venv-newest; else echo "$LANES_DIR/newest/venv"; fi ;;
        *) die "unknown lane '$1' (expected min, latest or newest)" ;;
    esac
}

# The pinned requirements a lane is built from.
lane_requirements() {
    case "$1" in
        newest) echo "$REPO_DIR/requirements_newest.txt" ;;
        *) echo "$REPO_DIR/requirements_test.txt" ;;
    esac
}

# Ready: built from today's requirements, and (newest) its venv still there: the
# forky root it lives in may have been rebuilt for the latest lane since.
lane_ready() {
    [ -f "$LANES_DIR/$1/ready" ] && [ "$(cat "$LANES_DIR/$1/ready")" = "$(lane_fingerprint "$1")" ] || return 1
    [ "$1" = newest ] || return 0
    local venv
    venv=$(lane_venv newest)
    if [ "$(latest_lane_kind)" = forky ]; then venv="$FORKY_ROOT$venv"; fi
    [ -f "$venv/pyvenv.cfg" ]
}

# What a ready lane was built from: the layout and the pinned requirements.
lane_fingerprint() {
    { echo "$LANE_LAYOUT_VERSION"; cat "$(lane_requirements "${1:-min}")"; } | sha256sum | cut -c1-16
}

# Run a command in a lane with the repository as working directory.
# The venv's bin comes first on PATH, so `python`, `pytest`, `mypy` are the lane's.
lane_exec() {
    local lane=$1; shift
    local venv
    venv=$(lane_venv "$lane")
    if [ "$lane" != min ] && [ "$(latest_lane_kind)" = forky ]; then
        _forky_exec "$lane" "$venv" "$@"
    else
        (cd "$REPO_DIR" && PATH="$venv/bin:$PATH" VIRTUAL_ENV="$venv" "$@")
    fi
}

# Enter the forky root in a private mount namespace: the mounts vanish with
# the process, so an interrupted run leaves nothing mounted behind.
# The repository is bound at the same path inside, so paths in coverage
# reports and tracebacks read the same in both lanes.
_forky_exec() {
    local lane=$1 venv=$2; shift 2
    [ "$(id -u)" = 0 ] || die "the forky lane needs root (chroot); run as root or put Python >= 3.14.2 on PATH"
    # bash -c (not a here-document) keeps the caller's stdin for the command.
    unshare --mount --propagation private -- bash -c "$_FORKY_ENTER" forky-enter "$FORKY_ROOT" "$REPO_DIR" "$venv" "$lane" "$@"
}

_FORKY_ENTER=$(cat <<'INNER'
set -e
root=$1 repo=$2 venv=$3 lane=$4; shift 4
mkdir -p "$root$repo" "$root/proc" "$root/dev" "$root/tmp"
mount --bind "$repo" "$root$repo"
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
# Copied only when changed, and by rename: a run starting beside another must never
# read a half-written CA bundle (seen as an SSL "PEM lib" error).
refresh() { cmp -s "$1" "$2" && return 0; cp "$1" "$2.$$" && mv -f "$2.$$" "$2"; }
refresh /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
[ -f /etc/ssl/certs/ca-certificates.crt ] && refresh /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
# Pass through the few variables a run may carry (coverage file, CI flag, extras).
passthrough=()
for name in COVERAGE_FILE CI TERM HYPOTHESIS_PROFILE BENCH_ARGS; do
    [ -n "${!name:-}" ] && passthrough+=("$name=${!name}")
done
exec chroot "$root" /usr/bin/env -i "${passthrough[@]}" \
    HOME=/root LANG=C.UTF-8 \
    PATH="$venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    VIRTUAL_ENV="$venv" PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=180 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt \
    BITCOIN_MINING_LANE="$lane" \
    /bin/sh -c 'cd "$0" && exec "$@"' "$repo" "$@"
INNER
)
