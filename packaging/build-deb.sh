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
# ds01-runtime, statically linked, its hot code laid out together: see there.
packaging/build-runtime.sh target
# Man pages and completions from the clap definitions; the other names of ds01.
rm -rf target/assets
target/release/ds01 generate-assets target/assets
ln -s ds01 target/assets/container
ln -s ds01 target/assets/devcontainer
ln -s ds01 target/assets/project
ln -s ds01 target/assets/ds01-logs
cargo deb --no-build --locked "$@"
