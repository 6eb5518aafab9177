//! CPU time of the recorded process's threads, by thread name, read from `/proc/self/task` at
//! exit: what wattlens' own threads cost next to the program's, stated in the closing line.

use std::time::Duration;

/// CPU time (user plus system) of the threads sharing one name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadCpu {
    /// The threads' name (`comm`, at most 15 bytes on Linux).
    pub name: String,
    /// How many live threads carry it.
    pub threads: usize,
    /// Their CPU time together.
    pub cpu: Duration,
}

/// The name and CPU time, in clock ticks, of one `/proc/PID/task/TID/stat` line.
///
/// The name sits in parentheses and may hold spaces or parentheses itself, so the fields are
/// counted from its last `)`: `utime` and `stime` are the 14th and 15th fields of the line.
fn parse_stat(line: &str) -> Option<(String, u64)> {
    let open = line.find('(')?;
    let close = line.rfind(')')?;
    let name = line.get(open + 1..close)?.to_owned();
    let mut rest = line.get(close + 1..)?.split_ascii_whitespace();
    // After the name: state (field 3) ... utime (field 14), stime (field 15).
    let utime: u64 = rest.nth(11)?.parse().ok()?;
    let stime: u64 = rest.next()?.parse().ok()?;
    Some((name, utime + stime))
}

/// Group `(name, ticks)` pairs by name, at `ticks_per_s`, largest CPU time first.
fn group(stats: impl IntoIterator<Item = (String, u64)>, ticks_per_s: u64) -> Vec<ThreadCpu> {
    let mut by: Vec<ThreadCpu> = Vec::new();
    let per_tick_ns = 1_000_000_000 / ticks_per_s.max(1);
    for (name, ticks) in stats {
        let cpu = Duration::from_nanos(ticks.saturating_mul(per_tick_ns));
        match by.iter_mut().find(|t| t.name == name) {
            Some(t) => {
                t.threads += 1;
                t.cpu += cpu;
            }
            None => by.push(ThreadCpu {
                name,
                threads: 1,
                cpu,
            }),
        }
    }
    by.sort_by(|a, b| b.cpu.cmp(&a.cpu).then_with(|| a.name.cmp(&b.name)));
    by
}

/// The live threads of this process, grouped by name, largest CPU time first; empty where
/// `/proc` cannot be read.
pub fn by_name() -> Vec<ThreadCpu> {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let Ok(ticks) = u64::try_from(ticks) else {
        return Vec::new();
    };
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    let stats = tasks.filter_map(|t| {
        let text = std::fs::read_to_string(t.ok()?.path().join("stat")).ok()?;
        parse_stat(&text)
    });
    group(stats, ticks)
}

/// The program's threads with less CPU time than this are left out of the line (one clock
/// tick is 10 ms on most systems).
const MIN_SHOWN: Duration = Duration::from_millis(10);

/// One line on what the threads cost: wattlens' own (named `wattlens-…`) first, then the
/// program's busiest `others`.
pub fn summary(threads: &[ThreadCpu], others: usize) -> String {
    let own: Vec<String> = threads
        .iter()
        .filter(|t| t.name.starts_with("wattlens-"))
        .map(|t| format!("{} {:.2} s", t.name, t.cpu.as_secs_f64()))
        .collect();
    let rest: Vec<String> = threads
        .iter()
        .filter(|t| !t.name.starts_with("wattlens-") && t.cpu >= MIN_SHOWN)
        .take(others)
        .map(|t| {
            let n = if t.threads > 1 {
                format!(" ×{}", t.threads)
            } else {
                String::new()
            };
            format!("{}{n} {:.2} s", t.name, t.cpu.as_secs_f64())
        })
        .collect();
    let own = if own.is_empty() {
        "none".to_owned()
    } else {
        own.join(", ")
    };
    let rest = if rest.is_empty() {
        "none measurable".to_owned()
    } else {
        rest.join(", ")
    };
    format!("CPU time of wattlens' threads: {own}; of the program's busiest threads: {rest}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_gives_its_name_and_user_plus_system_ticks() {
        // A real line's shape, with a name holding a space and a parenthesis.
        let line = "4242 (pt_main (x) 1) S 1 4242 4242 0 -1 4194560 2710 0 0 0 731 119 0 0 20 0 9 0 123 456 789";
        assert_eq!(parse_stat(line), Some(("pt_main (x) 1".to_owned(), 850)));
        assert_eq!(parse_stat("7 (short) S 1 2"), None, "too few fields");
        assert_eq!(parse_stat("no name here"), None);
    }

    #[test]
    fn threads_of_one_name_add_up_and_the_busiest_come_first() {
        let stats = [
            ("python3".to_owned(), 700),
            ("wattlens-writer".to_owned(), 30),
            ("cuda-evthandlr".to_owned(), 0),
            ("pt_autograd".to_owned(), 2),
            ("pt_autograd".to_owned(), 3),
        ];
        let g = group(stats, 100);
        assert_eq!(g[0].name, "python3");
        assert_eq!(g[0].cpu, Duration::from_secs(7));
        assert_eq!(g[1].cpu, Duration::from_millis(300));
        let auto = g
            .iter()
            .find(|t| t.name == "pt_autograd")
            .map(|t| (t.threads, t.cpu));
        assert_eq!(auto, Some((2, Duration::from_millis(50))));
        let line = summary(&g, 2);
        assert!(
            line.starts_with("CPU time of wattlens' threads: wattlens-writer 0.30 s;"),
            "{line}"
        );
        assert!(
            line.ends_with("python3 7.00 s, pt_autograd ×2 0.05 s"),
            "{line}"
        );
        let all = summary(&g, 5);
        assert!(
            all.ends_with("pt_autograd ×2 0.05 s"),
            "a thread with no measurable CPU is left out: {all}"
        );
        let idle = summary(&group([("python3".to_owned(), 0)], 100), 3);
        assert!(idle.ends_with("busiest threads: none measurable"), "{idle}");
    }

    #[test]
    fn this_process_reads_its_own_threads() {
        let here = by_name();
        assert!(
            !here.is_empty(),
            "/proc/self/task lists at least this thread"
        );
        assert!(here.iter().map(|t| t.threads).sum::<usize>() >= 1);
    }
}
