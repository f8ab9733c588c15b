# shellcheck shell=bash
# What the scripts share; sourced, never run:
#
#   . "$(dirname "$(readlink -f "$0")")/lib/common.sh"
#
# Why a library plus a Rust helper, and not each script on its own: the simulated LAN
# (namespaces, bridge, veths, the LAN client, the --parent veth) and dnsmasq's command line
# used to be written out in bash in four scripts and again in the Rust harness (tests/src:
# bed.rs, dnsmasq.rs, docker.rs). Now the harness is the only place that builds a bed: the
# scripts start `ncbed` (tests/src/bin/ncbed.rs), which builds one with the harness, prints
# its names and addresses, and removes all of it when told to (or when the script dies).
# What remains here is plain glue the scripts would otherwise copy: root, cargo, tools,
# the workspace version, exit handlers, the ncbed conversation, statistics and the
# splicing of generated sections into docs/benchmarks.md.
#
# Functions (all die with a message on error; nothing here exits on success):
#   nc_root_dir                     the repository root (cd there with nc_cd_root)
#   usage_from_header               print the calling script's header comment (--help)
#   need_root WHY "$@"              re-exec under `sudo -n -E` or die
#   find_cargo                      print cargo's path (PATH, ~/.cargo/bin of $HOME,
#                                   of $SUDO_USER, of root), 1 if none
#   need_cargo                      find_cargo and put it first on PATH
#   need_tools TOOL...              die unless each is on PATH
#   workspace_version               [workspace.package] version of Cargo.toml
#   on_exit CMD                     run CMD (a function name, or a command line, eval'd)
#                                   on exit, last registered first; also on failure and
#                                   Ctrl-C/TERM (exit 130)
#   bed_start KIND ARGS...          build the ncbed binary, start `ncbed KIND ARGS...`,
#                                   set its NCBED_* variables; removed on exit
#   bed_stop                        remove the bed now (idempotent)
#   remove_service NC SVC           `NC down SVC`, its router (if labelled as SVC's), the
#                                   container SVC and its state directory, quietly
#   stats [FMT] / median [FMT]      stdin numbers -> "median min max" / median
#   ms T0 T1                        milliseconds between two $EPOCHREALTIME values
#   splice_doc FILE NAME TITLE BODY replace the generated section NAME of FILE
#   record_router_image REF PIN     record that router image REF must be PIN (an image ID,
#                                   or REPOSITORY@sha256:...) in the driver's pin record
#                                   ($NETCONTAINER_ROUTER_IMAGES or
#                                   /var/lib/netcontainer/.router-images); the driver
#                                   then creates routers from PIN, never from the tag

die() { echo "error: $*" >&2; exit 1; }

nc_root_dir() { (cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.." && pwd); }
nc_cd_root() { cd "$(nc_root_dir)" || die "cannot cd to the repository root"; }

usage_from_header() { awk 'NR == 1 { next } !/^#/ { exit } { sub(/^# ?/, ""); print }' "$0"; }

# need_root WHY "$@": as root already, or re-exec the calling script with sudo (no
# password prompt), or die saying WHY root is needed.
need_root() {
    local why=$1; shift
    [ "$(id -u)" -eq 0 ] && return 0
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        exec sudo -E "$0" "$@"
    fi
    die "$(basename "$0") must run as root ($why): sudo $0"
}

# cargo may live in the invoking user's home (sudo drops PATH entries).
find_cargo() {
    if command -v cargo >/dev/null 2>&1; then command -v cargo; return 0; fi
    local home
    for home in "${HOME:-/root}" ${SUDO_USER:+"$(getent passwd "$SUDO_USER" | cut -d: -f6)"} /root; do
        [ -n "$home" ] && [ -x "$home/.cargo/bin/cargo" ] && { echo "$home/.cargo/bin/cargo"; return 0; }
    done
    return 1
}

need_cargo() {
    local c d
    c=$(find_cargo) || die "cargo not found (install Rust, or put cargo on PATH)"
    d=$(dirname "$c")
    case ":$PATH:" in *":$d:"*) ;; *) export PATH="$d:$PATH" ;; esac
}

need_tools() {
    local t
    for t in "$@"; do
        command -v "$t" >/dev/null 2>&1 || die "$t not found (sudo ./scripts/install-deps)"
    done
}

workspace_version() {
    local v
    v=$(awk '
        /^[[:space:]]*\[/ { sec = $0; gsub(/[[:space:]]/, "", sec) }
        sec == "[workspace.package]" && /^[[:space:]]*version[[:space:]]*=/ {
            sub(/^[^"]*"/, ""); sub(/".*$/, ""); print; exit
        }' "$(nc_root_dir)/Cargo.toml")
    [ -n "$v" ] || die "cannot read [workspace.package] version from Cargo.toml"
    echo "$v"
}

# --- exit handlers ------------------------------------------------------------------------
_NC_ON_EXIT=()
on_exit() {
    if [ "${#_NC_ON_EXIT[@]}" -eq 0 ]; then
        trap _nc_run_exit EXIT
        trap 'exit 130' INT TERM
    fi
    _NC_ON_EXIT+=("$1")
}
_nc_run_exit() {
    local rc=$? i
    set +e
    for (( i = ${#_NC_ON_EXIT[@]} - 1; i >= 0; i-- )); do
        eval "${_NC_ON_EXIT[$i]}"
    done
    _NC_ON_EXIT=()
    return "$rc"
}

# --- the bed (ncbed) ----------------------------------------------------------------------
# ncbed's stdin is a pipe from this shell: if the script dies without bed_stop (even by
# SIGKILL), ncbed reads end-of-file and removes the bed all the same.
_NC_BED_PID=
_NC_BED_ERR=
bed_start() {
    [ -z "$_NC_BED_PID" ] || die "bed_start: a bed is already up"
    local root bin err line
    root=$(nc_root_dir)
    need_cargo
    (cd "$root" && cargo build -q -p netcontainer-tests --bin ncbed) || die "cargo build of ncbed failed"
    bin=$root/target/debug/ncbed
    err=$(mktemp /tmp/ncbed.XXXXXX)
    _NC_BED_ERR=$err
    on_exit "rm -f '$err'"
    on_exit bed_stop
    coproc NCBED { exec "$bin" "$@" 2>"$err"; }
    # shellcheck disable=SC2153 # NCBED_PID is set by coproc
    _NC_BED_PID=$NCBED_PID
    while :; do
        if ! IFS= read -r -u "${NCBED[0]}" line; then
            wait "$_NC_BED_PID" 2>/dev/null
            _NC_BED_PID=
            cat "$err" >&2
            die "ncbed $* did not come up"
        fi
        case "$line" in
            NCBED_READY=1) break ;;
            NCBED_[A-Z_]*=*) declare -g "$line" ;;
            *) echo "ncbed: $line" >&2 ;;
        esac
    done
}
bed_stop() {
    [ -n "$_NC_BED_PID" ] || return 0
    local rc=0
    kill -TERM "$_NC_BED_PID" 2>/dev/null
    wait "$_NC_BED_PID" 2>/dev/null || rc=$?
    _NC_BED_PID=
    if [ "$rc" -ne 0 ]; then
        cat "$_NC_BED_ERR" >&2
        echo "warning: ncbed exited with $rc while removing the bed" >&2
    fi
    return 0
}

# --- services on the bed -----------------------------------------------------------------
remove_service() {
    local nc=$1 svc=$2 router=netcontainer-$2
    "$nc" down "$svc" >/dev/null 2>&1
    # Only a router that says it is this service's.
    [ "$(docker inspect -f '{{index .Config.Labels "netcontainer.service"}}' "$router" 2>/dev/null)" = "$svc" ] \
        && docker rm -f -v "$router" >/dev/null 2>&1
    docker rm -f -v "$svc" >/dev/null 2>&1
    rm -rf "${NETCONTAINER_RUN_DIR:-/run/netcontainer}/${svc:?}"
    return 0
}

# --- numbers ------------------------------------------------------------------------------
# stats [FMT]: numbers on stdin -> "median min max"; the median is the middle value (the
# mean of the two middle values for an even count) printed with FMT (default %.1f; %s
# keeps a middle value as written), min and max as written.
# shellcheck disable=SC2120 # FMT is optional
stats() {
    sort -g | awk -v fmt="${1:-%.1f}" '{v[NR]=$1} END {
        if (!NR) exit
        m = NR % 2 ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2
        printf fmt " %s %s\n", m, v[1], v[NR]
    }'
}
# shellcheck disable=SC2120 # FMT is optional
median() { stats "$@" | awk '{print $1}'; }
ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b - a) * 1000 }'; }

# --- docs/benchmarks.md -------------------------------------------------------------------
# splice_doc FILE NAME SCRIPT BODY: the section between
#   <!-- BEGIN NAME: generated by SCRIPT, do not edit by hand -->  and  <!-- END NAME -->
# becomes BODY (appended with both markers when absent); the rest of FILE is left alone.
splice_doc() {
    local doc=$1 name=$2 script=$3 body=$4 tmp
    local begin="<!-- BEGIN $name: generated by $script, do not edit by hand -->"
    local end="<!-- END $name -->"
    mkdir -p "$(dirname "$doc")"
    [ -f "$doc" ] || printf '# Benchmarks\n\n' > "$doc"
    tmp=$(mktemp)
    printf '%s\n%s\n%s\n' "$begin" "$body" "$end" > "$tmp.section"
    if grep -qF "$begin" "$doc"; then
        awk -v b="$begin" -v e="$end" -v f="$tmp.section" '
            BEGIN { while ((getline l < f) > 0) sec = sec l "\n" }
            $0 == b { printf "%s", sec; skip = 1; next }
            $0 == e { skip = 0; next }
            !skip { print }
        ' "$doc" > "$tmp"
    else
        { cat "$doc"; printf '\n'; cat "$tmp.section"; } > "$tmp"
    fi
    cat "$tmp" > "$doc"
    rm -f "$tmp" "$tmp.section"
    echo "wrote $doc" >&2
}

# record_router_image REF PIN: replaces REF's line in the pin record (root's alone, 0600,
# in a 0700 directory like the driver's lib directory), atomically. Returns 1, with a
# warning, when it cannot write there (not root): the driver then runs REF unpinned.
record_router_image() {
    local ref=$1 pin=$2 file=${NETCONTAINER_ROUTER_IMAGES:-/var/lib/netcontainer/.router-images}
    local dir tmp
    # The driver refuses a record with a line it cannot read: never write one.
    printf '%s\n' "$pin" | grep -Eqx '([^[:space:]@]+@)?sha256:[0-9a-f]{64}' \
        || die "not an image ID or REPOSITORY@DIGEST: $pin"
    case "$ref" in ''|*[[:space:]]*) die "not an image reference: $ref" ;; esac
    dir=$(dirname "$file")
    if ! { [ -d "$dir" ] || install -d -m 0700 "$dir"; } 2>/dev/null || [ ! -w "$dir" ]; then
        echo "warning: cannot write $file: $ref is not pinned to this build (a pin recorded before still names the image it had; run as root to pin it)" >&2
        return 1
    fi
    tmp=$(mktemp "$file.XXXXXX") || return 1
    {
        if [ -f "$file" ]; then
            awk -v r="$ref" '$1 != r' "$file"
        else
            echo "# netcontainer router images: REFERENCE PIN (an image ID, or REPOSITORY@DIGEST)."
            echo "# Written by scripts/build-router-image and scripts/publish-router-image."
        fi
        echo "$ref $pin"
    } >"$tmp" && chmod 0600 "$tmp" && mv -f "$tmp" "$file" || { rm -f "$tmp"; return 1; }
}
