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

. "$repo/contrib/deps.sh"
rust=""
command -v cargo >/dev/null || [ -x "$HOME/.cargo/bin/cargo" ] || rust="curl ca-certificates gcc"
# shellcheck disable=SC2086
install_missing $rust
if ! command -v cargo >/dev/null; then
    [ -x "$HOME/.cargo/bin/cargo" ] || curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
    PATH="$HOME/.cargo/bin:$PATH"
fi

say "Building ds01"
cargo build --release --locked --workspace --quiet
bin="$repo/target/release"
runc=$(command -v runc || echo /usr/sbin/runc)

work=$(mktemp -d /tmp/ds01-demo.XXXXXX)
. "$repo/contrib/private-dockerd.sh"
cleanup() {
    if [ -n "${dockerd_pid:-}" ]; then
        docker rm -f train-a train-b big >/dev/null 2>&1 || true
        dockerd_stop
    fi
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
max_gpu_equivalents = 0.5

[users.carol]
allow_full_gpu = true
max_gpu_equivalents = 1.0
TOML
export DS01_CONFIG="$work/config.toml"
export DOCKER_HOST="unix://$work/docker.sock"
ds01() { "$bin/ds01" "$@"; }

say "Starting a private Docker daemon whose default runtime is ds01-runtime"
dockerd_start "$work" "$bin/ds01-runtime"
echo "dockerd is up (pid $dockerd_pid), with a local busybox image"

say "The GPUs ds01 hands out (simulated: no NVIDIA hardware needed)"
run ds01 gpus

say "Three GPU containers of three users: two get MIG slices, carol asks for a full GPU"
quiet docker run -d --name train-a --label ds01.user=alice -e NVIDIA_VISIBLE_DEVICES=all busybox:local sleep 600
quiet docker run -d --name train-b --label devcontainer.local_folder=/home/bob/thesis -e NVIDIA_VISIBLE_DEVICES=all busybox:local sleep 600
quiet docker run -d --name big --label ds01.user=carol -e NVIDIA_VISIBLE_DEVICES=all -e DS01_GPU_PROFILE=full busybox:local sleep 600

say "alice may not have a full GPU: the container fails with the reason"
run docker run --rm --label ds01.user=alice -e NVIDIA_VISIBLE_DEVICES=all -e DS01_GPU_PROFILE=full busybox:local true || true

say "What each container sees: only its own device"
for c in train-a train-b big; do
    printf '%s: NVIDIA_VISIBLE_DEVICES=%s\n' "$c" "$(docker exec "$c" sh -c 'echo $NVIDIA_VISIBLE_DEVICES')"
    docker exec "$c" sh -c 'for f in /dev/nvidia[0-9]* /dev/nvidia-caps/*; do [ -c $f ] && echo "    $f"; done; true'
done

say "Who holds what"
run ds01 gpus
run ds01 container ls --all
say "The same for Prometheus (the reaper's pass writes it for node-exporter each minute)"
printf '$ ds01 metrics | grep -E "^ds01_(user_gpu_equivalents|device_allocated.*user=\"[a-z])"\n'
ds01 metrics | grep -E '^ds01_(user_gpu_equivalents|device_allocated.*user="[a-z])'

say "A container without a GPU request is passed to runc untouched"
run docker run --rm busybox:local sh -c 'ls /dev | grep nvidia || echo "no NVIDIA device in /dev"'

say "Stopping them: every device is free again"
quiet docker rm -f train-a train-b big
sleep 0.5
run ds01 gpus

say "The audit log"
run ds01 events
say "GPU-equivalent-hours per user, from the audit log"
run ds01 report --since 1h
say "Done; stopping dockerd and removing $work"
