#!/bin/sh
# Builds the static ds01-runtime as shipped: TARGET/release/ds01-runtime,
# and the same link with its symbols beside it (ds01-runtime.symbols, for
# profiles). TARGET is cargo's target directory (default: target).
#
# ds01-runtime starts for every runc command on the host. Statically linked,
# it skips the dynamic loader; it needs neither NSS nor NVML (it asks the
# dynamic ds01-accounts and ds01 beside it for those), so a static glibc
# binary is safe. Its start is mostly the kernel mapping in the code it
# runs, 64 KiB at a time, so the functions a create runs are laid out
# together (packaging/hot-functions.txt, written by the benchmark: see
# docs/benchmark.md). The linker wants them by their mangled names, which
# only a first link tells: hence two.
set -eu
cd "$(dirname "$0")/.."
target=$(mkdir -p "${1:-target}" && cd "${1:-target}" && pwd)
bin="$target/release/ds01-runtime"
build() {
    CARGO_TARGET_DIR="$target" cargo rustc --release --locked -p ds01-runtime --bin ds01-runtime -- \
        -C target-feature=+crt-static -C strip=none "$@"
}
build
# The hot list's names (as `nm -C` writes them; a trailing `*` takes every
# name it begins) to this build's symbols, in the list's order.
order="$target/hot-order.txt"
fail() {
    echo "build-runtime: $*" >&2
    exit 1
}
nm -p --defined-only "$bin" >"$order.nm" || fail "nm cannot read $bin"
nm -p -C --defined-only "$bin" >"$order.nm-c" || fail "nm cannot read $bin"
# The two listings pair line by line: the same symbols, in the same order.
[ "$(wc -l <"$order.nm")" = "$(wc -l <"$order.nm-c")" ] || fail "nm listed $bin two ways"
sed -E 's/^[0-9a-f]+ [a-zA-Z] //' "$order.nm" >"$order.mangled"
sed -E 's/^[0-9a-f]+ [a-zA-Z] //' "$order.nm-c" >"$order.demangled"
[ -s "$order.mangled" ] || fail "no symbols in $bin"
grep -qv '^#' packaging/hot-functions.txt || fail "packaging/hot-functions.txt names no function"
paste -d '\t' "$order.demangled" "$order.mangled" | awk -F '\t' '
    NR == FNR { if ($0 != "" && $0 !~ /^#/) want[++n] = $0; next }
    { names[$1] = names[$1] $2 "\n"; all[++m] = $0 }
    END {
        for (i = 1; i <= n; i++) {
            w = want[i]
            if (w ~ /\*$/) {
                p = substr(w, 1, length(w) - 1)
                for (j = 1; j <= m; j++) {
                    split(all[j], f, "\t")
                    if (index(f[1], p) == 1) printf "%s\n", f[2]
                }
            } else if (w in names) printf "%s", names[w]
        }
    }' packaging/hot-functions.txt - >"$order"
rm -f "$order.nm" "$order.nm-c" "$order.mangled" "$order.demangled"
# A list that matches nothing of this build (another toolchain's names)
# would link as if there were none: say so.
[ -s "$order" ] || fail "no function of packaging/hot-functions.txt is in $bin; rewrite it (docs/benchmark.md)"
# Named by its content: cargo relinks when the order changes.
sum=$(sha256sum "$order" | cut -c1-16)
cp "$order" "$target/hot-order-$sum.txt"
# lld orders; a linker that cannot (GNU ld, off x86-64) links as before.
build -C "link-arg=-Wl,--symbol-ordering-file=$target/hot-order-$sum.txt" -C link-arg=-Wl,--no-warn-symbol-ordering ||
    { echo "build-runtime: the linker cannot order symbols: linked in its own order" >&2 && build; }
# Stripped into a new file: cargo's output is a hard link to its own copy,
# which a later, fresh build puts back.
cp "$bin" "$bin.symbols"
strip -o "$bin.stripped" "$bin.symbols"
mv "$bin.stripped" "$bin"
