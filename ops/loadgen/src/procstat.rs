//! CPU time and memory of a server's whole process tree, from `/proc`
//! (Linux). A homeserver may be several processes (Synapse's workers, a
//! PostgreSQL server started for it), so the root PID and all of its
//! descendants are counted.

use std::collections::HashMap;
use std::fs;

/// Clock ticks per second of `/proc/<pid>/stat` times: `USER_HZ`, which the
/// kernel's ABI fixes at 100 on every architecture Linux runs on.
const TICKS_PER_SECOND: f64 = 100.0;

/// The fields of `/proc/<pid>/stat` this module reads.
struct Stat {
    ppid: u32,
    /// utime + stime of the process, plus cutime + cstime of children it
    /// has waited for (so short-lived children are not lost).
    ticks: u64,
}

fn read_stat(pid: u32) -> Option<Stat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain anything.
    let after = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    // `after` starts at field 3 (state): field N is index N - 3.
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    Some(Stat {
        ppid: u32::try_from(field(4)?).ok()?,
        ticks: field(14)? + field(15)? + field(16)? + field(17)?,
    })
}

/// `root` and every process descended from it.
pub fn tree(root: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(entries) = fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            if let Some(stat) = read_stat(pid) {
                children.entry(stat.ppid).or_default().push(pid);
            }
        }
    }
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        if let Some(kids) = children.get(&out[i]) {
            out.extend(kids);
        }
        i += 1;
    }
    out
}

/// CPU seconds (user + system) used so far by the tree under `root`.
pub fn cpu_seconds(root: u32) -> f64 {
    let ticks: u64 = tree(root)
        .into_iter()
        .filter_map(read_stat)
        .map(|s| s.ticks)
        .sum();
    ticks as f64 / TICKS_PER_SECOND
}

/// Resident memory of the tree under `root`, in bytes.
pub fn rss_bytes(root: u32) -> u64 {
    tree(root)
        .into_iter()
        .filter_map(|pid| fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .filter_map(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map(|kib| kib * 1024)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_measured() {
        let me = std::process::id();
        assert!(tree(me).contains(&me));
        assert!(rss_bytes(me) > 1024 * 1024, "a running test uses memory");
        // Burn some CPU and see the counter move.
        let before = cpu_seconds(me);
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed().as_millis() < 300 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        assert!(cpu_seconds(me) > before, "CPU time grows while spinning");
    }

    #[test]
    fn children_are_in_the_tree() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .expect("spawn sleep");
        let found = tree(std::process::id()).contains(&child.id());
        let _ = child.kill();
        let _ = child.wait();
        assert!(found, "a child process belongs to the tree");
    }
}
