#!/bin/sh
# Builds the Debian package: target/debian/ds01_<version>-1_<arch>.deb
# Needs cargo-deb (cargo install cargo-deb --locked).
set -eu
cd "$(dirname "$0")/.."
command -v cargo-deb >/dev/null || {
    echo "build-deb: cargo-deb not found; install it with: cargo install cargo-deb --locked" >&2
    exit 2
}
cargo build --release --locked --workspace
# ds01-runtime starts for every runc command on the host: statically linked
# it skips the dynamic loader. It needs neither NSS nor NVML (it asks the
# dynamic ds01-accounts and ds01 beside it for those), so a static glibc
# binary is safe. ds01-poststop, the hook runc runs at every GPU container's
# delete, has no libc at all (its own crate; the workspace build makes it).
cargo rustc --release --locked -p ds01-runtime --bin ds01-runtime -- -C target-feature=+crt-static
# Man pages and completions from the clap definitions; the other names of ds01.
rm -rf target/assets
target/release/ds01 generate-assets target/assets
ln -s ds01 target/assets/container
ln -s ds01 target/assets/devcontainer
ln -s ds01 target/assets/project
ln -s ds01 target/assets/ds01-logs
cargo deb --no-build --locked "$@"
