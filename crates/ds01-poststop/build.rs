//! The hook has its own `_start` and makes its system calls itself: no C
//! runtime, no libc, a fixed-address static executable (nothing to relocate
//! at start).
fn main() {
    for arg in ["-nostartfiles", "-nostdlib", "-static", "-no-pie"] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
}
