#!/bin/bash
# Runs the whole test suite: unit, integration (stand-in runc) and
# end-to-end (Debian's real runc and a private dockerd; needs root).
# Installs runc, busybox-static and docker.io first where they are missing.
set -eu
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ] && [ "${DS01_E2E:-1}" != 0 ]; then
    echo "contrib/test.sh: the end-to-end tests run real containers and need root;" >&2
    echo "  run it with sudo, or set DS01_E2E=0 to run the rest without them" >&2
    exit 2
fi

if [ "$(id -u)" -eq 0 ]; then
    . contrib/deps.sh
    install_missing
    install_devcontainer_cli
fi

command -v cargo >/dev/null || {
    echo "contrib/test.sh: cargo not found; install Rust (https://rustup.rs)" >&2
    exit 2
}
log=$(mktemp)
# End-to-end tests that skip (no root, say) are written here, so the closing
# line counts them as skipped rather than passed.
export DS01_SKIPPED_LOG
DS01_SKIPPED_LOG=$(mktemp)
# The end-to-end tests make the simulated GPUs' device nodes under /dev, as
# a real GPU server has them; remove the ones they made when the run ends.
nodes_list=/run/ds01-test-host-nodes
remove_test_nodes() {
    [ -f "$nodes_list" ] || return 0
    while IFS= read -r n; do
        [ -c "$n" ] && rm -f "$n"
    done < "$nodes_list"
    rmdir /dev/nvidia-caps /dev/dri 2>/dev/null || true
    rm -f "$nodes_list"
}
trap 'rm -f "$log" "$DS01_SKIPPED_LOG"; [ "$(id -u)" -ne 0 ] || remove_test_nodes' EXIT
set +e
# The runtime is its own crate: build it beside the CLI the tests run.
cargo build --locked --workspace 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
if [ "$rc" -eq 0 ]; then
    DS01_E2E="${DS01_E2E:-1}" cargo test --locked --workspace --tests 2>&1 | tee -a "$log"
    rc=${PIPESTATUS[0]}
fi
# In CI (or when asked) also the .deb: install, Docker suite, removal. It
# changes the system (a package, /etc/docker/daemon.json), so not by default.
if [ "$rc" -eq 0 ] && { [ -n "${CI:-}" ] || [ "${DS01_PACKAGE_TEST:-0}" = 1 ]; }; then
    bash contrib/test-package.sh 2>&1 | tee -a "$log"
    rc=${PIPESTATUS[0]}
fi
set -e
# One closing line over every test binary.
skipped=$(wc -l < "$DS01_SKIPPED_LOG")
grep '^test result:' "$log" | awk -v s="$skipped" '{p += $4; f += $6} END {printf "%d passed, %d failed, %d skipped\n", p - s, f, s}'
exit "$rc"
