//! What INFO reads from the operating system and the allocator: memory in use, resident
//! memory, physical memory, CPU time and the kernel's name. Each reading is one system
//! call or one small file, taken by the connection that asked (never on the raft loop).

/// Bytes the allocator has handed out and not had back (glibc's `mallinfo2`: in-use
/// chunks of every arena plus mmap'd blocks): INFO's `used_memory`, as Redis reports its
/// allocator's count.
pub fn allocated_bytes() -> u64 {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 takes no arguments and only reads glibc's own arena statistics
        // under their locks; it returns a plain struct by value.
        let info = unsafe { libc::mallinfo2() };
        (info.uordblks as u64).saturating_add(info.hblkhd as u64)
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        resident_bytes()
    }
}

/// The process's resident set (`/proc/self/statm`'s second field times the page size);
/// 0 where there is no /proc.
pub fn resident_bytes() -> u64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|statm| statm.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0);
    pages.saturating_mul(page_bytes())
}

fn page_bytes() -> u64 {
    // SAFETY: sysconf only reads a constant of the system.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).unwrap_or(4096)
}

/// Physical memory of the machine, in bytes (0 if unknown).
pub fn total_system_bytes() -> u64 {
    // SAFETY: as page_bytes.
    let pages = unsafe { libc::sysconf(libc::_SC_PHYS_PAGES) };
    u64::try_from(pages)
        .unwrap_or(0)
        .saturating_mul(page_bytes())
}

/// CPU seconds in system and user mode, of the process or (`children`) of its reaped
/// children, as Redis' `used_cpu_sys` / `used_cpu_user`.
pub fn cpu_seconds(children: bool) -> (f64, f64) {
    let who = if children {
        libc::RUSAGE_CHILDREN
    } else {
        libc::RUSAGE_SELF
    };
    // SAFETY: rusage is plain data, fully written by getrusage on success; on failure we
    // read the zeroed struct.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(who, &mut usage);
        usage
    };
    let seconds = |time: libc::timeval| time.tv_sec as f64 + time.tv_usec as f64 / 1e6;
    (seconds(usage.ru_stime), seconds(usage.ru_utime))
}

/// `sysname release machine`, as Redis' `os` field (`Linux 6.1.0 x86_64`).
pub fn os_name() -> String {
    // SAFETY: utsname is plain data that uname fills with NUL-terminated strings.
    let name = unsafe {
        let mut name: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut name) != 0 {
            return std::env::consts::OS.to_owned();
        }
        name
    };
    let field = |chars: &[libc::c_char]| {
        let bytes: Vec<u8> = chars
            .iter()
            .take_while(|c| **c != 0)
            .map(|c| *c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    format!(
        "{} {} {}",
        field(&name.sysname),
        field(&name.release),
        field(&name.machine)
    )
}

/// Bytes as Redis' `*_human` fields write them: `512B`, `1.50K`, `2.00M`, `3.10G`, ...
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["K", "M", "G", "T", "P"];
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.2}{}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_bytes_follows_redis_units() {
        let cases = [
            (0, "0B"),
            (1023, "1023B"),
            (1024, "1.00K"),
            (941_288, "919.23K"),
            (7_147_520, "6.82M"),
            (25_276_182_528, "23.54G"),
        ];
        for (bytes, text) in cases {
            assert_eq!(human_bytes(bytes), text, "{bytes} bytes");
        }
    }

    #[test]
    fn readings_are_plausible() {
        assert!(allocated_bytes() > 0);
        assert!(resident_bytes() > 0);
        assert!(total_system_bytes() >= resident_bytes());
        assert!(!os_name().is_empty());
    }
}
