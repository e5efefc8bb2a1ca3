//! On x86-64 Linux the hook has its own `_start` and makes its system
//! calls itself: no C runtime, no libc, a fixed-address static executable
//! (nothing to relocate at start). Elsewhere, or with the `portable`
//! feature, it is an ordinary std program.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(raw)");
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    let raw = var("CARGO_CFG_TARGET_ARCH") == "x86_64"
        && var("CARGO_CFG_TARGET_OS") == "linux"
        && std::env::var_os("CARGO_FEATURE_PORTABLE").is_none();
    if raw {
        println!("cargo::rustc-cfg=raw");
        for arg in ["-nostartfiles", "-nostdlib", "-static", "-no-pie"] {
            println!("cargo::rustc-link-arg-bins={arg}");
        }
    }
}
