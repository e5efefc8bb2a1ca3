#!/bin/sh
# How long `container ls --all` takes with 200 containers (as root):
#     contrib/bench-container-ls.sh [CONTAINERS] [RUNS]
# A private dockerd (default runtime ds01-runtime, simulated GPUs) gets
# CONTAINERS containers of ten users (seven of them holding MIG slices);
# then `ds01 container ls --all` and, for scale, Docker's own `docker ps -a`
# run RUNS times each, alternating. Prints the medians in milliseconds.
set -eu
cd "$(dirname "$0")/.."
repo=$(pwd)
n=${1:-200}
runs=${2:-30}
. "$repo/contrib/private-dockerd.sh"
bench_setup "$repo"
export DOCKER_HOST="unix://$work/docker.sock"

i=0
while [ $i -lt 7 ]; do
    docker run -d --label ds01.user=user$((i % 10)) -e NVIDIA_VISIBLE_DEVICES=all busybox:local sleep 600 >/dev/null
    i=$((i + 1))
done
while [ $i -lt "$n" ]; do
    docker create --label ds01.user=user$((i % 10)) --label devcontainer.local_folder=/home/user$((i % 10))/p$i busybox:local true >/dev/null
    i=$((i + 1))
done

ms() { echo $(($(date +%s%N) / 1000)); }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]/1000}'; }
: > "$work/ds01.t"; : > "$work/docker.t"
k=0
while [ $k -lt "$runs" ]; do
    t0=$(ms); "$bin/ds01" container ls --all >/dev/null; t1=$(ms)
    /usr/bin/docker ps -a >/dev/null; t2=$(ms)
    echo $((t1 - t0)) >> "$work/ds01.t"; echo $((t2 - t1)) >> "$work/docker.t"
    k=$((k + 1))
done
rows=$("$bin/ds01" container ls --all --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["containers"]))')
echo "containers listed: $rows"
echo "ds01 container ls --all   median $(median < "$work/ds01.t") ms over $runs runs (whole command: start, ledger, inventory, one Docker call, render)"
echo "docker ps -a (reference)  median $(median < "$work/docker.t") ms"
