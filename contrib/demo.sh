#!/bin/sh
# The ds01 demo: GPU containers through Docker with ds01-runtime as its
# default runtime, on a simulated inventory (one full 80 GB GPU, one GPU split
# into seven 1g.10gb MIG slices). Run as root on Debian or Ubuntu: it installs
# what is missing, builds, starts a private dockerd (its own data, socket and
# state; the system's Docker, if any, is not touched), and removes everything
# it made when it ends.
set -eu
cd "$(dirname "$0")/.."
repo=$(pwd)

if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then
    say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
else
    say() { printf '\n== %s\n' "$*"; }
fi
run() { printf '$ %s\n' "$*"; "$@"; }
quiet() { printf '$ %s\n' "$*"; "$@" >/dev/null; }

if [ "$(id -u)" -ne 0 ]; then
    echo "demo: starts a Docker daemon, so it needs root: sudo $0" >&2
    exit 2
fi

missing=""
[ -x /usr/sbin/runc ] || [ -x /usr/bin/runc ] || missing="$missing runc"
[ -x /bin/busybox ] || [ -x /usr/bin/busybox ] || missing="$missing busybox-static"
[ -x /usr/sbin/dockerd ] && [ -x /usr/bin/docker ] || missing="$missing docker.io"
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
bin="$repo/target/release"
busybox=$(command -v busybox || echo /bin/busybox)
runc=$(command -v runc || echo /usr/sbin/runc)

work=$(mktemp -d /tmp/ds01-demo.XXXXXX)
dockerd_pid=""
cleanup() {
    if [ -n "$dockerd_pid" ]; then
        /usr/bin/docker -H "unix://$work/docker.sock" rm -f train-a train-b big >/dev/null 2>&1 || true
        kill "$dockerd_pid" 2>/dev/null || true
        while kill -0 "$dockerd_pid" 2>/dev/null; do sleep 0.2; done
    fi
    umount -R "$work/data" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

cat > "$work/config.toml" <<TOML
runc = "$runc"
state_dir = "$work/state"
log = "$work/runtime.log"
inventory = "$repo/contrib/sim/inventory.toml"
audit_log = "$work/events.jsonl"
docker_data_root = "$work/data"

[defaults]
allow_full_gpu = true
TOML
export DS01_CONFIG="$work/config.toml"
cat > "$work/daemon.json" <<JSON
{
  "data-root": "$work/data", "exec-root": "$work/exec", "pidfile": "$work/docker.pid",
  "hosts": ["unix://$work/docker.sock"], "bridge": "none", "iptables": false, "ip6tables": false,
  "storage-driver": "overlay2",
  "default-runtime": "ds01", "runtimes": {"ds01": {"path": "$bin/ds01-runtime"}}
}
JSON

say "Starting a private Docker daemon whose default runtime is ds01-runtime"
/usr/sbin/dockerd --config-file "$work/daemon.json" >"$work/dockerd.log" 2>&1 &
dockerd_pid=$!
docker() { /usr/bin/docker -H "unix://$work/docker.sock" "$@"; }
ds01() { "$bin/ds01" "$@"; }
i=0
until docker version >/dev/null 2>&1; do
    i=$((i + 1))
    if [ $i -gt 100 ]; then echo "demo: dockerd did not start; its log:" >&2; cat "$work/dockerd.log" >&2; exit 1; fi
    sleep 0.1
done
mkdir -p "$work/rootfs/bin"
cp "$busybox" "$work/rootfs/bin/busybox"
for a in $("$busybox" --list); do [ "$a" = busybox ] || ln -s busybox "$work/rootfs/bin/$a"; done
tar -C "$work/rootfs" -c . | docker import - busybox:local >/dev/null
echo "dockerd is up (pid $dockerd_pid), with a local busybox image"

say "The GPUs ds01 hands out (simulated: no NVIDIA hardware needed)"
run ds01 gpus

say "Three GPU containers: two ask for a GPU, one for a full GPU"
quiet docker run -d --name train-a -e NVIDIA_VISIBLE_DEVICES=all busybox:local sleep 600
quiet docker run -d --name train-b -e NVIDIA_VISIBLE_DEVICES=all busybox:local sleep 600
quiet docker run -d --name big -e NVIDIA_VISIBLE_DEVICES=all -e DS01_GPU_PROFILE=full busybox:local sleep 600

say "What each container sees: only its own device"
for c in train-a train-b big; do
    printf '%s: NVIDIA_VISIBLE_DEVICES=%s\n' "$c" "$(docker exec "$c" sh -c 'echo $NVIDIA_VISIBLE_DEVICES')"
    docker exec "$c" sh -c 'for f in /dev/nvidia[0-9]* /dev/nvidia-caps/*; do [ -c $f ] && echo "    $f"; done; true'
done

say "Who holds what"
run ds01 gpus
run docker ps --format 'table {{.Names}}\t{{.Status}}\t{{.Image}}'

say "A container without a GPU request is passed to runc untouched"
run docker run --rm busybox:local sh -c 'ls /dev | grep nvidia || echo "no NVIDIA device in /dev"'

say "Stopping them: every device is free again"
quiet docker rm -f train-a train-b big
sleep 0.5
run ds01 gpus

say "What ds01-runtime logged"
sed 's/^/  /' "$work/runtime.log"
say "Done; stopping dockerd and removing $work"
