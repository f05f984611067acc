//! Running a helper program (an installer such as `npm ci`) with a time limit: a
//! registry that stops answering must not hold a module's install lock, and every
//! compile waiting on it, for ever. The program runs in a process group of its own,
//! which is killed whole when the limit passes (npm starts processes of its own).

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How often the program is looked at while it runs.
const POLL: Duration = Duration::from_millis(20);

/// How a bounded run ended.
#[derive(Debug)]
pub(super) enum Bounded {
    /// The program exited; its status and output.
    Exited(Output),
    /// It ran past the limit and was killed, with its process group; what it had
    /// printed so far.
    TimedOut(Output),
}

/// Runs `command` (stdin closed, stdout and stderr collected) for at most `limit`.
pub(super) fn run_bounded(mut command: Command, limit: Duration) -> std::io::Result<Bounded> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()?;
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + limit;
    let (status, timed_out) = loop {
        if let Some(status) = child.try_wait()? {
            break (status, false);
        }
        if Instant::now() >= deadline {
            let group = rustix::process::Pid::from_child(&child);
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
            break (child.wait()?, true);
        }
        std::thread::sleep(POLL);
    };
    let output = Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    };
    Ok(match timed_out {
        true => Bounded::TimedOut(output),
        false => Bounded::Exited(output),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_program_that_finishes_gives_its_output() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo out; echo err >&2; exit 3"]);
        let Bounded::Exited(out) = run_bounded(cmd, Duration::from_secs(30)).unwrap() else {
            panic!("timed out")
        };
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(
            (&out.stdout[..], &out.stderr[..]),
            (&b"out\n"[..], &b"err\n"[..])
        );
    }

    #[test]
    fn a_program_past_its_limit_is_killed_with_its_children() {
        // The grandchild holds stdout open: only killing the whole group ends the run.
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo started; sleep 300 & wait"]);
        let started = Instant::now();
        let Bounded::TimedOut(out) = run_bounded(cmd, Duration::from_millis(300)).unwrap() else {
            panic!("finished")
        };
        assert!(started.elapsed() < Duration::from_secs(60));
        assert_eq!(out.stdout, b"started\n");
    }
}
