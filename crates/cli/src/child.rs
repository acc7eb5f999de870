//! Waiting for a short-lived probe program with a time limit: `cpu`'s
//! model check and `doctor`'s probes run one the same way.

use std::io::{self, Read};
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

/// Waits for `child` at most `timeout`; then reads what it wrote to its
/// stderr (piped). `Ok(None)`: it did not finish in time, and was killed
/// and reaped.
pub fn wait_for(child: &mut Child, timeout: Duration) -> io::Result<Option<(ExitStatus, String)>> {
    let start = Instant::now();
    let status = loop {
        match child.try_wait()? {
            Some(st) => break st,
            None if start.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Ok(None);
            }
            None => std::thread::sleep(Duration::from_millis(2)),
        }
    };
    let mut err = String::new();
    if let Some(mut s) = child.stderr.take() {
        let _ = s.read_to_string(&mut err);
    }
    Ok(Some((status, err)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    #[test]
    fn a_finished_child_gives_its_status_and_stderr_a_hung_one_is_killed() {
        let mut c = Command::new("sh")
            .args(["-c", "echo oops >&2; exit 3"])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (st, err) = wait_for(&mut c, Duration::from_secs(60)).unwrap().unwrap();
        assert_eq!((st.code(), err.as_str()), (Some(3), "oops\n"));
        let mut c = Command::new("sleep").arg("600").spawn().unwrap();
        assert!(wait_for(&mut c, Duration::from_millis(50))
            .unwrap()
            .is_none());
        // Killed (SIGKILL) and reaped.
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(c.try_wait().unwrap().and_then(|s| s.signal()), Some(9));
    }
}
