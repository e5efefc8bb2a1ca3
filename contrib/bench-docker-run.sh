#!/bin/sh
# ds01 through Docker, and what the static runtime's account look-ups cost
# (as root):
#     contrib/bench-docker-run.sh [RUNS]
# A private dockerd whose default runtime is ds01-runtime. Alternating, RUNS
# times each: `docker run --rm busybox true` through ds01 and with
# --runtime=runc, without and with a GPU request. Then the helper the static
# runtime runs for user and group look-ups (`ds01-accounts`), which a GPU
# create with a known owner pays once, beside the start of the whole CLI
# (`ds01 --version`, what the look-up cost when the CLI answered it).
# Prints medians and ratios.
set -eu
cd "$(dirname "$0")/.."
repo=$(pwd)
runs=${1:-30}
. "$repo/contrib/private-dockerd.sh"
bench_setup "$repo"
export DOCKER_HOST="unix://$work/docker.sock"

us() { echo $(($(date +%s%N) / 1000)); }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]/1000}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", a / b}'; }
pair() { # NAME ENV: ds01 then runc, alternating
    : > "$work/a.t"; : > "$work/b.t"
    k=0
    while [ $k -lt "$runs" ]; do
        t0=$(us); /usr/bin/docker run --rm $2 busybox:local true >/dev/null; t1=$(us)
        /usr/bin/docker run --rm --runtime=runc $2 busybox:local true >/dev/null; t2=$(us)
        echo $((t1 - t0)) >> "$work/a.t"; echo $((t2 - t1)) >> "$work/b.t"
        k=$((k + 1))
    done
    a=$(median < "$work/a.t"); b=$(median < "$work/b.t")
    echo "$1: ds01 $a ms, runc $b ms: ratio $(ratio "$a" "$b")"
}
pair "docker run --rm busybox true, no GPU" ""
pair "docker run --rm busybox true, GPU request" "-e NVIDIA_VISIBLE_DEVICES=all"
helper() { # NAME COMMAND...: the mean of RUNS*10 in a row (no clock read between)
    name=$1; shift
    n=$((runs * 10))
    k=0
    t0=$(us)
    while [ $k -lt "$n" ]; do "$@" >/dev/null; k=$((k + 1)); done
    t1=$(us)
    echo "$name: $(awk -v t=$((t1 - t0)) -v n="$n" 'BEGIN {printf "%.2f", t / n / 1000}') ms each"
}
helper "account helper, name and groups (ds01-accounts user 0)" "$bin/ds01-accounts" user 0
helper "account helper, groups (ds01-accounts groups root)" "$bin/ds01-accounts" groups root
helper "the whole CLI starting (ds01 --version)" "$bin/ds01" --version
