//! Running the profiled command as a child: wattlens stays alive through Ctrl-C (the child
//! gets it from the terminal and flushes its trace), passes SIGTERM and SIGHUP on, and reports
//! how the child ended.

use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicI32, Ordering};

/// The child's pid while it runs (0 otherwise), for the forwarding handler.
static CHILD: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(sig: libc::c_int) {
    let pid = CHILD.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe; a child that already exited makes it fail, which
        // is harmless.
        unsafe { libc::kill(pid, sig) };
    }
}

/// Set `sig`'s disposition to `handler`, returning the previous one.
fn set(sig: libc::c_int, handler: libc::sighandler_t) -> libc::sighandler_t {
    // SAFETY: a valid signal number and a handler that is SIG_IGN, SIG_DFL, a previous
    // disposition, or `forward`, which only calls async-signal-safe functions.
    unsafe { libc::signal(sig, handler) }
}

/// Start `cmd`, wait for it, and return how it ended.
///
/// # Errors
/// The spawn error when the command cannot be started.
pub fn run(cmd: &mut Command) -> std::io::Result<ExitStatus> {
    let mut child = cmd.spawn()?;
    CHILD.store(i32::try_from(child.id()).unwrap_or(0), Ordering::SeqCst);
    // Installed after the spawn, so the child starts with the dispositions we had.
    let previous = [
        (libc::SIGINT, set(libc::SIGINT, libc::SIG_IGN)),
        (
            libc::SIGTERM,
            set(
                libc::SIGTERM,
                forward as extern "C" fn(libc::c_int) as libc::sighandler_t,
            ),
        ),
        (
            libc::SIGHUP,
            set(
                libc::SIGHUP,
                forward as extern "C" fn(libc::c_int) as libc::sighandler_t,
            ),
        ),
    ];
    let status = child.wait();
    CHILD.store(0, Ordering::SeqCst);
    for (sig, old) in previous {
        set(sig, old);
    }
    status
}

/// The exit code a shell would give for `status`: the child's code, or 128 + the signal that
/// killed it.
pub fn exit_code(status: ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code & 0xff).unwrap_or(1),
        (None, Some(sig)) => u8::try_from((128 + sig) & 0xff).unwrap_or(1),
        (None, None) => 1,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn exit_codes_follow_the_shell() {
        let code = |script: &str| exit_code(run(Command::new("sh").args(["-c", script])).unwrap());
        assert_eq!(code("exit 0"), 0);
        assert_eq!(code("exit 7"), 7);
        assert_eq!(code("kill -9 $$"), 137);
    }
}
