//! Buffers for moving large amounts of data.

use std::io;

/// Zero-filled anonymous memory aligned to a huge page, and advised to use
/// huge pages where the system allows them: copying gigabytes through it
/// then costs fewer page faults and TLB misses than ordinary heap memory.
pub(crate) struct PageBuf {
    base: *mut libc::c_void,
    map_len: usize,
    start: *mut u8,
    len: usize,
}

// SAFETY: the mapping is owned by the value alone.
unsafe impl Send for PageBuf {}

/// The huge page size the buffers are aligned to.
const HUGE: usize = 2 << 20;

impl PageBuf {
    /// A buffer of `len` bytes.
    pub(crate) fn new(len: usize) -> io::Result<PageBuf> {
        let map_len = len + HUGE;
        // SAFETY: a fresh private anonymous mapping; checked below.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let offset = (HUGE - (base as usize) % HUGE) % HUGE;
        // SAFETY: offset + len <= map_len.
        let start = unsafe { (base as *mut u8).add(offset) };
        // SAFETY: advice on memory this value owns; failure is harmless.
        #[cfg(target_os = "linux")]
        unsafe {
            libc::madvise(start as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
        }
        Ok(PageBuf {
            base,
            map_len,
            start,
            len,
        })
    }
}

impl std::ops::Deref for PageBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `len` bytes of zero-filled, owned memory.
        unsafe { std::slice::from_raw_parts(self.start, self.len) }
    }
}

impl std::ops::DerefMut for PageBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as for Deref, and `&mut self` is unique.
        unsafe { std::slice::from_raw_parts_mut(self.start, self.len) }
    }
}

impl Drop for PageBuf {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe {
            libc::munmap(self.base, self.map_len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_is_zeroed_writable_and_aligned_to_a_huge_page() {
        for len in [16 << 10, 3 << 20, 4 << 20] {
            let mut b = PageBuf::new(len).unwrap();
            assert_eq!(b.len(), len);
            assert_eq!(b.as_ptr() as usize % HUGE, 0);
            assert!(b.iter().all(|&x| x == 0));
            b[len - 1] = 7;
            b[0] = 9;
            assert_eq!((b[0], b[len - 1]), (9, 7));
        }
    }
}
