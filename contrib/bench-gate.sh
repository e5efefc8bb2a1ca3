#!/bin/sh
# What ds01-gate costs (as root):
#     contrib/bench-gate.sh [RUNS] [CONTAINERS]
# A private dockerd (default runtime ds01-runtime, simulated GPUs) with the
# gate in front of it. Side by side, alternating, RUNS times each:
# `docker run --rm busybox true` through the gate and on Docker's socket,
# then `docker ps` with CONTAINERS containers the same two ways. Prints the
# medians and the ratios. The client runs as a throwaway user who is no
# admin (both ways), so the gate judges every request as it would a user's.
set -eu
cd "$(dirname "$0")/.."
repo=$(pwd)
runs=${1:-30}
n=${2:-200}
. "$repo/contrib/private-dockerd.sh"
user=ds01bench$$
bench_on_exit='[ -z "${gate_pid:-}" ] || kill "$gate_pid" 2>/dev/null || true; userdel -r "$user" 2>/dev/null || true'
bench_setup "$repo"
useradd -m -s /bin/sh "$user"
"$bin/ds01-gate" --listen "$work/gate.sock" --docker "$work/docker.sock" 2>/dev/null &
gate_pid=$!
until [ -S "$work/gate.sock" ]; do sleep 0.05; done
chmod 755 "$work"
chmod 666 "$work/docker.sock" "$work/gate.sock"

direct="unix://$work/docker.sock"
gated="unix://$work/gate.sock"
us() { echo $(($(date +%s%N) / 1000)); }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]/1000}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", a / b}'; }
pair() { # NAME ARGS...: alternating runs, direct then gated
    name=$1; shift
    : > "$work/d.t"; : > "$work/g.t"
    k=0
    while [ $k -lt "$runs" ]; do
        t0=$(us); runuser -u "$user" -- /usr/bin/docker -H "$direct" "$@" >/dev/null; t1=$(us)
        runuser -u "$user" -- /usr/bin/docker -H "$gated" "$@" >/dev/null; t2=$(us)
        echo $((t1 - t0)) >> "$work/d.t"; echo $((t2 - t1)) >> "$work/g.t"
        k=$((k + 1))
    done
    d=$(median < "$work/d.t"); g=$(median < "$work/g.t")
    echo "$name: direct $d ms, through the gate $g ms: ratio $(ratio "$g" "$d")"
}
pair "docker run --rm busybox true" run --rm busybox:local true
i=0
while [ $i -lt "$n" ]; do
    /usr/bin/docker -H "$direct" create --label ds01.user=user$((i % 10)) busybox:local true >/dev/null
    i=$((i + 1))
done
pair "docker ps -a with $n containers" ps -a
