# Sourced by the demo and the benchmarks: a private dockerd whose default
# runtime is ds01-runtime, in its own directory, with a busybox image.
#   dockerd_start WORK RUNTIME   starts it; defines `docker` for it
#   dockerd_stop                 stops it by its pid and unmounts
# The caller exports DS01_CONFIG first.

dockerd_start() {
    _work=$1
    cat > "$_work/daemon.json" <<JSON
{
  "data-root": "$_work/data", "exec-root": "$_work/exec", "pidfile": "$_work/docker.pid",
  "hosts": ["unix://$_work/docker.sock"], "bridge": "none", "iptables": false, "ip6tables": false,
  "storage-driver": "overlay2",
  "default-runtime": "ds01", "runtimes": {"ds01": {"path": "$2"}}
}
JSON
    /usr/sbin/dockerd --config-file "$_work/daemon.json" >"$_work/dockerd.log" 2>&1 &
    dockerd_pid=$!
    _i=0
    until docker version >/dev/null 2>&1; do
        _i=$((_i + 1))
        if [ $_i -gt 150 ]; then
            echo "dockerd did not start; its log:" >&2
            cat "$_work/dockerd.log" >&2
            return 1
        fi
        sleep 0.1
    done
    _bb=$(command -v busybox || echo /bin/busybox)
    mkdir -p "$_work/rootfs/bin"
    cp "$_bb" "$_work/rootfs/bin/busybox"
    for _a in $("$_bb" --list); do [ "$_a" = busybox ] || ln -s busybox "$_work/rootfs/bin/$_a"; done
    tar -C "$_work/rootfs" -c . | docker import - busybox:local >/dev/null
}

docker() { /usr/bin/docker -H "unix://$_work/docker.sock" "$@"; }

dockerd_stop() {
    [ -n "${dockerd_pid:-}" ] || return 0
    kill "$dockerd_pid" 2>/dev/null || true
    while kill -0 "$dockerd_pid" 2>/dev/null; do sleep 0.2; done
    dockerd_pid=""
    umount -R "$_work/data" 2>/dev/null || true
}

# bench_setup REPO: what the benchmark scripts share: root, a release
# build (the runtime static, as shipped) copied into bin, a work directory removed on exit (after `bench_on_exit`, if set),
# a config over the simulated GPUs, and the private dockerd. Sets bin, work.
bench_setup() {
    [ "$(id -u)" -eq 0 ] || { echo "bench: starts a Docker daemon, so it needs root" >&2; exit 2; }
    cargo build --release --locked --workspace --quiet
    # The runtime as the package ships it: statically linked, hot code together.
    "$1/packaging/build-runtime.sh" "$1/target/static" >/dev/null
    work=$(mktemp -d /tmp/ds01-bench.XXXXXX)
    trap bench_cleanup EXIT INT TERM
    bin="$work/bin"
    mkdir "$bin"
    cp "$1/target/static/release/ds01-runtime" "$bin/"
    for b in ds01 ds01-accounts ds01-poststop ds01-gate; do cp "$1/target/release/$b" "$bin/"; done
    cat > "$work/config.toml" <<TOML
runc = "$(command -v runc || echo /usr/sbin/runc)"
state_dir = "$work/state"
log = "$work/runtime.log"
inventory = "$1/contrib/sim/inventory.toml"
audit_log = "$work/events.jsonl"
docker_data_root = "$work/data"
TOML
    export DS01_CONFIG="$work/config.toml"
    dockerd_start "$work" "$bin/ds01-runtime"
}

bench_cleanup() {
    eval "${bench_on_exit:-:}"
    dockerd_stop
    rm -rf "$work"
}
