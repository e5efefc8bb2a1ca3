//! `ds01-poststop poststop ALLOC_ID RELEASED_DIR`: the poststop hook
//! ds01-runtime writes into a GPU container's spec. runc runs it once the
//! container is gone. It makes the empty file `RELEASED_DIR/ALLOC_ID`; from
//! then on the ledger counts the allocation as free, and its next locked
//! write (a GPU create, `ds01 gc`, the reaper's pass, a second delete)
//! takes the record out, logs and audits it.
//!
//! Why a program of its own: runc starts the hook for every GPU container
//! it deletes, and starting libc is most of what a small process costs
//! (glibc probes the CPU at start, which traps in a VM). This one has no
//! libc: its own `_start`, and the five system calls it needs.
//!
//! Exit status: 0 marked (or marked before), 1 the mark could not be made
//! (said on stderr, which runc puts in its error), 2 bad arguments.

// Elsewhere than x86-64 Linux (or with the `portable` feature, to try
// it), the same program on std: correct, only slower to start.
#![cfg_attr(raw, no_std, no_main)]
// Loops below stay loops: LLVM must not turn them into calls to the very
// `memcpy` and friends this crate defines (there is no libc to provide them).
#![cfg_attr(raw, no_builtins)]

#[cfg(raw)]
use core::arch::{asm, naked_asm};

const USAGE: &[u8] = b"usage: ds01-poststop poststop ALLOC_ID RELEASED_DIR\n";
/// An allocation id is `<hex nanoseconds>-<pid>`; anything else (a `/`, a
/// `..`) is refused before it reaches a path.
const ID_MAX: usize = 64;
const PATH_MAX: usize = 4096;

#[cfg(raw)]
#[unsafe(naked)]
#[unsafe(no_mangle)]
pub extern "C" fn _start() -> ! {
    // The kernel leaves argc, then argv, at the stack pointer.
    naked_asm!(
        "mov rdi, rsp",
        "and rsp, -16",
        "call {start}",
        "ud2",
        start = sym start,
    )
}

/// # Safety
/// `sp` is the stack pointer the kernel started the process with.
#[cfg(raw)]
unsafe extern "C" fn start(sp: *const usize) -> ! {
    let mut args: [&[u8]; 5] = [b""; 5];
    // SAFETY: the kernel lays out argc and argc NUL-terminated strings.
    let argc = unsafe { *sp };
    for (i, slot) in args.iter_mut().enumerate().take(argc) {
        *slot = unsafe { c_str(*(sp.add(1 + i) as *const *const u8)) };
    }
    let code = if argc == 4 {
        run(args[1], args[2], args[3])
    } else {
        usage()
    };
    sys::exit(code)
}

#[cfg(not(raw))]
fn main() {
    use std::os::unix::ffi::OsStringExt;
    let args: Vec<Vec<u8>> = std::env::args_os().map(|a| a.into_vec()).collect();
    let code = match &args[..] {
        [_, verb, id, dir] => run(verb, id, dir),
        _ => usage(),
    };
    sys::exit(code)
}

/// The bytes of a NUL-terminated string.
///
/// # Safety
/// `p` points at a NUL-terminated string that outlives the process.
#[cfg(raw)]
unsafe fn c_str(p: *const u8) -> &'static [u8] {
    let mut n = 0;
    // SAFETY: the string ends with a NUL.
    while unsafe { *p.add(n) } != 0 {
        n += 1;
    }
    unsafe { core::slice::from_raw_parts(p, n) }
}

fn usage() -> i32 {
    sys::write_all(2, USAGE);
    2
}

fn run(verb: &[u8], id: &[u8], dir: &[u8]) -> i32 {
    if verb != b"poststop" {
        return usage();
    }
    let id_ok = !id.is_empty()
        && id.len() <= ID_MAX
        && id.iter().all(|&b| b.is_ascii_hexdigit() || b == b'-');
    if !id_ok {
        say(&[b"ds01-poststop: '", id, b"' is not an allocation id\n"]);
        return 2;
    }
    if dir.first() != Some(&b'/') || dir.len() + 1 + id.len() + 1 > PATH_MAX {
        say(&[
            b"ds01-poststop: '",
            dir,
            b"' is not an absolute directory path\n",
        ]);
        return 2;
    }
    // runc writes the container's state on stdin; read it to the end so
    // its copy never meets a closed pipe.
    let mut scratch = [0u8; 512];
    while sys::read(0, &mut scratch) > 0 {}

    let mut path = [0u8; PATH_MAX];
    let n = join(&mut path, &[dir, b"/", id]);
    let mut dir_z = [0u8; PATH_MAX];
    join(&mut dir_z, &[dir]);
    let mut err = mark(&path);
    if err == sys::ENOENT {
        // The first release since the state directory was made. 0755: the
        // CLI reads the marks as any user, as it reads the ledger.
        err = match sys::mkdir(&dir_z, 0o755) {
            0 | sys::EEXIST => mark(&path),
            failed => failed,
        };
    }
    if err == 0 {
        return 0;
    }
    let mut digits = [0u8; 20];
    say(&[
        b"ds01-poststop: cannot mark allocation ",
        id,
        b" released: '",
        &path[..n],
        b"': os error ",
        decimal(-err as u64, &mut digits),
        b"\n",
    ]);
    1
}

/// Makes the mark; 0, or an error number (negative). One made before is
/// fine: runc may run the hook again on a delete that failed half-way.
fn mark(path: &[u8]) -> isize {
    let fd = sys::open(
        path,
        sys::O_WRONLY | sys::O_CREAT | sys::O_EXCL | sys::O_NOFOLLOW | sys::O_CLOEXEC,
        0o644,
    );
    if fd >= 0 {
        sys::close(fd);
        0
    } else if fd == sys::EEXIST {
        0
    } else {
        fd
    }
}

/// Writes the parts into `buf` with a NUL after them; returns their length.
fn join(buf: &mut [u8], parts: &[&[u8]]) -> usize {
    let mut n = 0;
    for part in parts {
        for &b in *part {
            buf[n] = b;
            n += 1;
        }
    }
    buf[n] = 0;
    n
}

fn decimal(mut v: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            return &buf[i..];
        }
    }
}

fn say(parts: &[&[u8]]) {
    for part in parts {
        sys::write_all(2, part);
    }
}

/// The system calls, x86-64 Linux. Each returns what the kernel did: a
/// value, or a negative error number.
#[cfg(raw)]
mod sys {
    use super::asm;

    pub const ENOENT: isize = -2;
    pub const EEXIST: isize = -17;
    const EINTR: isize = -4;
    pub const O_WRONLY: usize = 0o1;
    pub const O_CREAT: usize = 0o100;
    pub const O_EXCL: usize = 0o200;
    pub const O_NOFOLLOW: usize = 0o400000;
    pub const O_CLOEXEC: usize = 0o2000000;
    const AT_FDCWD: isize = -100;

    /// # Safety
    /// The arguments are valid for system call `nr` (a fourth, unused,
    /// is ignored by the kernel).
    unsafe fn syscall3(nr: usize, a: usize, b: usize, c: usize) -> isize {
        // SAFETY: as the caller promises.
        unsafe { syscall4(nr, a, b, c, 0) }
    }

    /// # Safety
    /// The arguments are valid for system call `nr`.
    unsafe fn syscall4(nr: usize, a: usize, b: usize, c: usize, d: usize) -> isize {
        let ret: isize;
        // SAFETY: the caller passes what the call expects.
        unsafe {
            asm!(
                "syscall",
                inlateout("rax") nr as isize => ret,
                in("rdi") a,
                in("rsi") b,
                in("rdx") c,
                in("r10") d,
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack),
            );
        }
        ret
    }

    pub fn read(fd: usize, buf: &mut [u8]) -> isize {
        loop {
            // SAFETY: `buf` is writable for its length.
            let n = unsafe { syscall3(0, fd, buf.as_mut_ptr() as usize, buf.len()) };
            if n != EINTR {
                return n;
            }
        }
    }

    pub fn write_all(fd: usize, mut buf: &[u8]) {
        while !buf.is_empty() {
            // SAFETY: `buf` is readable for its length.
            let n = unsafe { syscall3(1, fd, buf.as_ptr() as usize, buf.len()) };
            if n == EINTR {
                continue;
            }
            if n <= 0 {
                return;
            }
            buf = &buf[n as usize..];
        }
    }

    /// `path` ends with a NUL.
    pub fn open(path: &[u8], flags: usize, mode: usize) -> isize {
        // SAFETY: a NUL-terminated path (openat).
        unsafe { syscall4(257, AT_FDCWD as usize, path.as_ptr() as usize, flags, mode) }
    }

    /// `path` ends with a NUL.
    pub fn mkdir(path: &[u8], mode: usize) -> isize {
        // SAFETY: a NUL-terminated path (mkdirat).
        unsafe { syscall3(258, AT_FDCWD as usize, path.as_ptr() as usize, mode) }
    }

    pub fn close(fd: isize) {
        // SAFETY: closes a descriptor this process opened.
        unsafe { syscall3(3, fd as usize, 0, 0) };
    }

    pub fn exit(code: i32) -> ! {
        // SAFETY: exit_group does not return.
        unsafe {
            asm!(
                "syscall",
                in("rax") 231usize,
                in("rdi") code as isize,
                options(noreturn, nostack),
            )
        }
    }
}

/// The same calls through std, where there is no raw version.
#[cfg(not(raw))]
mod sys {
    use std::ffi::OsStr;
    use std::io::{Read, Write};
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};

    pub const ENOENT: isize = -2;
    pub const EEXIST: isize = -17;
    pub const O_WRONLY: usize = 0;
    pub const O_CREAT: usize = 0;
    pub const O_EXCL: usize = 0;
    pub const O_NOFOLLOW: usize = 0;
    pub const O_CLOEXEC: usize = 0;

    /// The path up to its NUL.
    fn path(p: &[u8]) -> &std::path::Path {
        let end = p.iter().position(|&b| b == 0).unwrap_or(p.len());
        OsStr::from_bytes(&p[..end]).as_ref()
    }

    fn errno(e: std::io::Error) -> isize {
        -(e.raw_os_error().unwrap_or(5) as isize)
    }

    pub fn read(_fd: usize, buf: &mut [u8]) -> isize {
        std::io::stdin()
            .read(buf)
            .map_or_else(errno, |n| n as isize)
    }

    pub fn write_all(_fd: usize, buf: &[u8]) {
        let _ = std::io::stderr().write_all(buf);
    }

    /// Always creates, exclusively, never through a link; returns 0 (no
    /// descriptor is kept) or a negative error number.
    pub fn open(p: &[u8], _flags: usize, mode: usize) -> isize {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode as u32)
            .custom_flags(0o400000)
            .open(path(p))
            .map_or_else(errno, |_| 0)
    }

    pub fn mkdir(p: &[u8], mode: usize) -> isize {
        std::fs::DirBuilder::new()
            .mode(mode as u32)
            .create(path(p))
            .map_or_else(errno, |_| 0)
    }

    pub fn close(_fd: isize) {}

    pub fn exit(code: i32) -> ! {
        std::process::exit(code)
    }
}

#[cfg(raw)]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    // Only an index out of bounds could get here, and the lengths are
    // checked first; fail as a hook, not as a crash.
    sys::exit(1)
}

// What compiled code may call where there is no libc.

/// # Safety
/// As C's `memcpy`.
#[cfg(raw)]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: regions that do not overlap are a case of memmove's.
    unsafe { memmove(dst, src, n) }
}

/// # Safety
/// As C's `memmove`.
#[cfg(raw)]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dst as usize) < (src as usize) {
        for i in 0..n {
            // SAFETY: as C's memmove.
            unsafe { *dst.add(i) = *src.add(i) };
        }
    } else {
        for i in (0..n).rev() {
            // SAFETY: as C's memmove.
            unsafe { *dst.add(i) = *src.add(i) };
        }
    }
    dst
}

/// # Safety
/// As C's `memset`.
#[cfg(raw)]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
    for i in 0..n {
        // SAFETY: as C's memset.
        unsafe { *dst.add(i) = c as u8 };
    }
    dst
}

/// # Safety
/// As C's `memcmp`.
#[cfg(raw)]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    for i in 0..n {
        // SAFETY: as C's memcmp.
        let (x, y) = unsafe { (*a.add(i), *b.add(i)) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
    }
    0
}

/// # Safety
/// As C's `bcmp`.
#[cfg(raw)]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: as C's memcmp.
    unsafe { memcmp(a, b, n) }
}

/// Precompiled `core` names the unwinder's personality routine even where
/// panics abort (debug builds keep the reference); nothing ever calls it.
#[cfg(raw)]
#[unsafe(no_mangle)]
pub extern "C" fn rust_eh_personality() {}
