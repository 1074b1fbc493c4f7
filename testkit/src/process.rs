//! A child process that is killed (SIGKILL) and reaped when dropped, so a failing test or bench
//! phase never leaves a wharf process behind; signals by name for the fault tests.

use std::io;
use std::process::{Child, Command, ExitStatus};

pub struct Process {
    child: Child,
}

impl Process {
    pub fn spawn(command: &mut Command) -> io::Result<Process> {
        Ok(Process { child: command.spawn()? })
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (`TERM`, `HUP`, `STOP`, `CONT`, …), as `kill -SIGNAL` does.
    pub fn signal(&self, signal: &str) -> io::Result<()> {
        let status = Command::new("kill").arg(format!("-{signal}")).arg(self.id().to_string()).status()?;
        if status.success() { Ok(()) } else { Err(io::Error::other(format!("kill -{signal} failed: {status}"))) }
    }

    /// SIGKILL (nothing is flushed), then reaps it.
    pub fn kill(&mut self) -> io::Result<ExitStatus> {
        self.child.kill()?;
        self.child.wait()
    }

    /// SIGTERM, then waits for the exit.
    pub fn terminate(&mut self) -> io::Result<ExitStatus> {
        self.signal("TERM")?;
        self.child.wait()
    }

    /// [`Process::terminate`], for a process that is not needed afterwards.
    pub fn stop(mut self) -> io::Result<ExitStatus> {
        self.terminate()
    }

    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        self.child.try_wait()
    }

    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        self.child.wait()
    }

    /// Peak resident memory so far (`VmHWM`), in MiB.
    pub fn peak_rss_mib(&self) -> Option<f64> {
        self.status_mib("VmHWM:")
    }

    /// Resident memory now (`VmRSS`), in MiB.
    pub fn rss_mib(&self) -> Option<f64> {
        self.status_mib("VmRSS:")
    }

    fn status_mib(&self, field: &str) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with(field))?;
        let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib / 1024.0)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
