#!/bin/sh
# The ds01 demo: GPU containers through ds01-runtime and Debian's real runc,
# on a simulated inventory (one full 80 GB GPU, one GPU split into seven
# 1g.10gb MIG slices). Run as root on Debian or Ubuntu; it installs what is
# missing, builds, and removes everything it made when it ends.
set -eu
cd "$(dirname "$0")/.."
repo=$(pwd)

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
[ -n "${NO_COLOR:-}" ] || [ ! -t 1 ] && say() { printf '\n== %s\n' "$*"; }

if [ "$(id -u)" -ne 0 ]; then
    echo "demo: runs containers, so it needs root: sudo $0" >&2
    exit 2
fi

missing=""
[ -x /usr/sbin/runc ] || [ -x /usr/bin/runc ] || missing="$missing runc"
[ -x /bin/busybox ] || [ -x /usr/bin/busybox ] || missing="$missing busybox-static"
command -v python3 >/dev/null || missing="$missing python3"
command -v cargo >/dev/null || [ -x "$HOME/.cargo/bin/cargo" ] || missing="$missing curl ca-certificates gcc"
if [ -n "$missing" ]; then
    say "Installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq $missing >/dev/null
fi
if ! command -v cargo >/dev/null; then
    [ -x "$HOME/.cargo/bin/cargo" ] || curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
    PATH="$HOME/.cargo/bin:$PATH"
fi

say "Building ds01"
cargo build --release --locked --quiet
shim="$repo/target/release/ds01-runtime"
ds01="$repo/target/release/ds01"
runc=$(command -v runc || echo /usr/sbin/runc)
busybox=$(command -v busybox || echo /bin/busybox)

work=$(mktemp -d /tmp/ds01-demo.XXXXXX)
root="$work/runc-root"
cleanup() {
    for id in $(ls "$root" 2>/dev/null); do "$runc" --root "$root" delete --force "$id" >/dev/null 2>&1 || true; done
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

cat > "$work/config.toml" <<TOML
runc = "$runc"
state_dir = "$work/state"
log = "$work/runtime.log"
inventory = "$repo/contrib/sim/inventory.toml"
allow_full_gpu = true
TOML
export DS01_CONFIG="$work/config.toml"

mkdir -p "$work/rootfs/bin"
cp "$busybox" "$work/rootfs/bin/busybox"
for a in $("$busybox" --list); do [ "$a" = busybox ] || ln -s busybox "$work/rootfs/bin/$a"; done

# bundle NAME SCRIPT [ENV...]: an OCI bundle running SCRIPT in busybox.
bundle() {
    name=$1 script=$2; shift 2
    mkdir -p "$work/$name"
    (cd "$work/$name" && "$runc" spec)
    python3 - "$work/$name/config.json" "$work/rootfs" "$script" "$@" <<'PY'
import json, sys
path, rootfs, script, env = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
spec = json.load(open(path))
spec["process"].update(terminal=False, args=["sh", "-c", script])
spec["process"]["env"] += env
spec["root"] = {"path": rootfs, "readonly": True}
json.dump(spec, open(path, "w"), indent=2)
PY
}

start() {
    id=$1
    "$shim" --root "$root" --log "$work/$id/log.json" --log-format json create --bundle "$work/$id" --pid-file "$work/$id/init.pid" "$id" </dev/null >/dev/null 2>&1 || {
        echo "  $id: $(tail -n 1 "$work/$id/log.json")"; return 1; }
    "$shim" --root "$root" start "$id"
}
stop() {
    "$shim" --root "$root" kill "$1" KILL
    sleep 0.2
    "$shim" --root "$root" --log "$work/$1/log.json" delete "$1"
}

say "The inventory ds01 sees (simulated: no NVIDIA hardware needed)"
"$ds01" gpus

say "A GPU container: it sees exactly one MIG slice"
bundle look 'echo "  NVIDIA_VISIBLE_DEVICES=$NVIDIA_VISIBLE_DEVICES"; for f in /dev/nvidia* /dev/nvidia-caps/*; do [ -c $f ] && echo "  $f"; done' NVIDIA_VISIBLE_DEVICES=all
"$shim" --root "$root" --log "$work/look/log.json" run --bundle "$work/look" look

say "A container without a GPU request is passed to runc untouched"
bundle plain 'ls /dev | grep nvidia || echo "  no NVIDIA device nodes in /dev"'
"$shim" --root "$root" run --bundle "$work/plain" plain

say "Three long-running GPU containers: two MIG slices, one full GPU"
bundle train-a 'sleep 300' NVIDIA_VISIBLE_DEVICES=all
bundle train-b 'sleep 300' NVIDIA_VISIBLE_DEVICES=all
bundle big 'sleep 300' NVIDIA_VISIBLE_DEVICES=all DS01_GPU_PROFILE=full
for c in train-a train-b big; do start "$c" && echo "  started $c"; done
"$ds01" gpus

say "Stopping them: every device is free again"
for c in train-a train-b big; do stop "$c"; done
"$ds01" gpus

say "What the runtime logged"
sed 's/^/  /' "$work/runtime.log"
say "Done; cleaning up $work"
