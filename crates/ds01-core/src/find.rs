//! Byte search that never asks the CPU what it supports.
//!
//! `memchr::memmem` picks its routine at the first call, by CPUID (std's
//! feature detection runs about a dozen). In a virtual machine each CPUID
//! traps to the hypervisor: 3.6 µs apiece on the benchmark's VM, paid by
//! every create. SSE2 is part of x86_64, so its routine needs no asking.

/// Where `needle` first occurs in `haystack`.
pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    if let Some(f) = memchr::arch::x86_64::sse2::packedpair::Finder::new(needle)
        && haystack.len() >= f.min_haystack_len()
    {
        return f.find(haystack, needle);
    }
    // Short needles and haystacks, and other architectures.
    memchr::arch::all::rabinkarp::Finder::new(needle).find(haystack, needle)
}

#[cfg(test)]
mod tests {
    use super::find;

    #[test]
    fn it_finds_what_memmem_finds() {
        let hay = br#"{"env":["PATH=/usr/bin","NVIDIA_VISIBLE_DEVICES=all"],"x":"NVIDIA_"}"#;
        for needle in [
            &b"NVIDIA_VISIBLE_DEVICES"[..],
            b"NVIDIA_",
            b"\"x\"",
            b"{",
            b"}",
            b"absent",
            b"",
            b"NVIDIA_VISIBLE_DEVICES=all\"],\"x\":\"NVIDIA_\"} and more",
        ] {
            for end in 0..=hay.len() {
                let h = &hay[..end];
                assert_eq!(
                    find(h, needle),
                    memchr::memmem::find(h, needle),
                    "{:?} in {:?}",
                    String::from_utf8_lossy(needle),
                    String::from_utf8_lossy(h)
                );
            }
        }
    }
}
