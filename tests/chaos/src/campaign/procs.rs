//! The campaign's child processes: each one's standard output (history lines, for the fleet
//! instances) and standard error (its log) copied into files of the run's directory, and its
//! start, SIGKILL, SIGSTOP and SIGCONT.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncRead, AsyncWriteExt as _, BufReader};
use tokio::process::{Child, Command};

/// What kind of process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A fleet instance: history lines on standard output.
    Fleet,
    /// A web instance: its address on the first line of standard output.
    Web,
    /// The sandbox: its address on the first line of standard output.
    Sandbox,
}

/// How to start one instance again and again.
pub(crate) struct Instance {
    pub(crate) name: String,
    pub(crate) kind: Kind,
    program: PathBuf,
    args: Vec<String>,
    pub(crate) env: Vec<(String, String)>,
    dir: PathBuf,
    child: Option<Child>,
    /// The web instance's address.
    pub(crate) base: Option<url::Url>,
    pub(crate) stopped: bool,
}

/// Appends every line of `from` to `path`.
fn copy_lines(from: impl AsyncRead + Unpin + Send + 'static, path: PathBuf) {
    tokio::spawn(async move {
        let Ok(mut file) = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .await
        else {
            eprintln!("campaign: cannot open {}", path.display());
            return;
        };
        let mut lines = BufReader::new(from).lines();
        while let Ok(Some(mut line)) = lines.next_line().await {
            line.push('\n');
            if file.write_all(line.as_bytes()).await.is_err() {
                return;
            }
        }
        let _ = file.flush().await;
    });
}

impl Instance {
    pub(crate) fn new(
        name: &str,
        kind: Kind,
        program: PathBuf,
        args: Vec<String>,
        env: Vec<(String, String)>,
        dir: &Path,
    ) -> Self {
        Self {
            name: name.to_owned(),
            kind,
            program,
            args,
            env,
            dir: dir.to_owned(),
            child: None,
            base: None,
            stopped: false,
        }
    }

    /// Starts it, with `extra` environment (a faketime preload, ...). A web instance is
    /// waited for until it listens.
    pub(crate) async fn start(&mut self, extra: &[(String, String)]) -> Result<(), String> {
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .envs(extra.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(|e| {
            format!(
                "{}: could not start {} ({e})",
                self.name,
                self.program.display()
            )
        })?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        copy_lines(
            stderr,
            self.dir.join("logs").join(format!("{}.log", self.name)),
        );
        match self.kind {
            Kind::Fleet => copy_lines(
                stdout,
                self.dir.join(format!("history-{}.jsonl", self.name)),
            ),
            Kind::Web | Kind::Sandbox => {
                // It prints its address once it listens: "open http://ADDR/" (the web
                // example), "withings-sandbox listening on http://ADDR/" (the sandbox).
                let mut lines = BufReader::new(stdout).lines();
                let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
                    .await
                    .map_err(|_| format!("{} did not start listening within 60 s", self.name))?
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| {
                        format!("{} exited before listening (see its log)", self.name)
                    })?;
                let url = line
                    .split_whitespace()
                    .last()
                    .filter(|w| w.starts_with("http://"))
                    .ok_or_else(|| format!("{}: unexpected first line", self.name))?;
                self.base = Some(url.parse().map_err(|_| "not a URL".to_owned())?);
                copy_lines(
                    lines.into_inner(),
                    self.dir.join("logs").join(format!("{}.out", self.name)),
                );
            }
        }
        self.child = Some(child);
        self.stopped = false;
        Ok(())
    }

    fn pid(&self) -> Option<rustix::process::Pid> {
        let id = self.child.as_ref()?.id()?;
        rustix::process::Pid::from_raw(i32::try_from(id).ok()?)
    }

    fn signal(&self, signal: rustix::process::Signal) -> Result<(), String> {
        let pid = self
            .pid()
            .ok_or_else(|| format!("{} is not running", self.name))?;
        rustix::process::kill_process(pid, signal).map_err(|e| format!("{}: kill: {e}", self.name))
    }

    /// SIGKILL, then waits for it to be gone.
    pub(crate) async fn kill(&mut self) {
        if self.stopped {
            let _ = self.signal(rustix::process::Signal::CONT);
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
        self.stopped = false;
    }

    /// SIGINT (a clean stop), then SIGKILL after `grace`.
    pub(crate) async fn stop_gracefully(&mut self, grace: Duration) {
        if self.stopped {
            let _ = self.signal(rustix::process::Signal::CONT);
            self.stopped = false;
        }
        let _ = self.signal(rustix::process::Signal::INT);
        if let Some(child) = self.child.as_mut()
            && tokio::time::timeout(grace, child.wait()).await.is_ok()
        {
            self.child = None;
        }
        self.kill().await;
    }

    /// SIGSTOP: frozen, holding whatever it holds.
    pub(crate) fn freeze(&mut self) -> Result<(), String> {
        self.signal(rustix::process::Signal::STOP)?;
        self.stopped = true;
        Ok(())
    }

    /// SIGCONT.
    pub(crate) fn thaw(&mut self) -> Result<(), String> {
        self.signal(rustix::process::Signal::CONT)?;
        self.stopped = false;
        Ok(())
    }

    /// Whether it runs (it may have exited on its own: an error it could not survive).
    pub(crate) fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Its process id, for `prlimit`.
    pub(crate) fn raw_pid(&self) -> Option<u32> {
        self.child.as_ref()?.id()
    }
}
