//! Test support: a real `avix` daemon in a temporary root, with its FUSE mount, driven the way
//! a user drives it (the binary, shell tools, signals).
//!
//! FUSE needs root and `/dev/fuse`; [`require_fuse`] fails with a clear message elsewhere
//! unless `AVIX_SKIP_FUSE_TESTS=1` is set.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[cfg(feature = "kernel")]
pub mod kernel;
pub mod mock_llm;

use std::fs;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// Whether FUSE tests can run here. Panics with an explanation when they cannot, unless
/// `AVIX_SKIP_FUSE_TESTS` is set (then it returns `false` and says so).
pub fn require_fuse() -> bool {
    if std::env::var_os("AVIX_SKIP_FUSE_TESTS").is_some() {
        eprintln!("skipped: AVIX_SKIP_FUSE_TESTS is set");
        return false;
    }
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    assert!(
        root && Path::new("/dev/fuse").exists(),
        "this test mounts FUSE and needs root and /dev/fuse; set AVIX_SKIP_FUSE_TESTS=1 to skip it"
    );
    true
}

/// A free TCP port on loopback (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `script` with bash, `M` set to the mount point.
pub fn bash(mount: &Path, script: &str) -> Output {
    Command::new("bash")
        .arg("-c")
        .arg(script)
        .env("M", mount)
        .output()
        .unwrap()
}

/// An initialised root, possibly with a running daemon.
pub struct TestDaemon {
    /// The `avix` binary.
    pub bin: PathBuf,
    /// Temp directory holding the root and the mount point.
    pub dir: tempfile::TempDir,
    /// The runtime root.
    pub root: PathBuf,
    /// The mount point.
    pub mount: PathBuf,
    /// The ATP port.
    pub port: u16,
    /// The API key init printed.
    pub api_key: String,
    /// What init printed.
    pub init_output: String,
    child: Option<Child>,
    log: PathBuf,
}

impl TestDaemon {
    /// Initialises a root (user `alice`, admin, mapped to the host uid running the tests).
    pub fn init(bin: &Path) -> Self {
        Self::init_with(bin, &[])
    }

    /// Initialises a root with extra `config init` arguments.
    pub fn init_with(bin: &Path, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        Self::init_in(bin, dir, root, extra)
    }

    /// Initialises the root `root` (anywhere: a small tmpfs, say); `dir` holds the mount
    /// point and the log.
    pub fn init_in(bin: &Path, dir: tempfile::TempDir, root: PathBuf, extra: &[&str]) -> Self {
        let mount = dir.path().join("mnt");
        fs::create_dir_all(&mount).unwrap();
        // SAFETY: getuid has no preconditions.
        let uid = unsafe { libc::getuid() }.to_string();
        let out = Command::new(bin)
            .args(["server", "config", "init", "--root"])
            .arg(&root)
            .args([
                "--user",
                "alice",
                "--role",
                "admin",
                "--non-interactive",
                "--host-uid",
                &uid,
            ])
            .args(extra)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "init failed: {}{}",
            text,
            String::from_utf8_lossy(&out.stderr)
        );
        let api_key = text
            .split_whitespace()
            .find(|w| w.starts_with("sk-avix-"))
            .unwrap_or_default()
            .to_owned();
        let log = dir.path().join("daemon.log");
        Self {
            bin: bin.to_path_buf(),
            root,
            mount,
            port: free_port(),
            api_key,
            init_output: text,
            child: None,
            log,
            dir,
        }
    }

    /// `avix server start` for this root with extra arguments; does not wait.
    pub fn spawn(&mut self, extra: &[&str]) -> &mut Child {
        self.spawn_env(extra, &[])
    }

    /// Like [`TestDaemon::spawn`], with environment variables.
    pub fn spawn_env(&mut self, extra: &[&str], env: &[(&str, &str)]) -> &mut Child {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(&self.bin)
            .envs(env.iter().copied())
            .args(["server", "start", "--root"])
            .arg(&self.root)
            .args(["--port", &self.port.to_string(), "--mount"])
            .arg(&self.mount)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        self.child.as_mut().unwrap()
    }

    /// Runs `avix server start` expecting it to fail fast (error paths): returns its output.
    /// `env` sets (or with `None` removes) environment variables. Kills it after 20 s.
    pub fn start_expecting_failure(&self, extra: &[&str], env: &[(&str, Option<&str>)]) -> Output {
        let mut cmd = Command::new(&self.bin);
        cmd.args(["server", "start", "--root"])
            .arg(&self.root)
            .args(["--port", &self.port.to_string()]);
        if !extra.iter().any(|a| *a == "--mount" || *a == "--no-mount") {
            cmd.arg("--mount").arg(&self.mount);
        }
        cmd.args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        let mut child = cmd.spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("`avix server start` kept running; expected a failure");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        child.wait_with_output().unwrap()
    }

    /// Starts the daemon and waits until it is ready (the mount serves `/proc/status.yaml`).
    pub fn start(&mut self) -> &mut Self {
        self.spawn(&[]);
        self.wait_ready();
        self
    }

    /// Waits for `ready in` in the log and a working mount; panics with the log on failure.
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let marker = self.log_text().matches("ready in").count();
        loop {
            if self.log_text().matches("ready in").count() > marker
                && self.mount.join("proc/status.yaml").exists()
            {
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!(
                    "daemon exited with {status} before ready:\n{}",
                    self.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "daemon not ready in 20 s:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The daemon's log so far.
    pub fn log_text(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// The daemon's OS pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon running").id()
    }

    /// Sends `signal` and waits for the exit.
    pub fn signal(&mut self, signal: i32) -> ExitStatus {
        let mut child = self.child.take().expect("daemon running");
        // SAFETY: signalling our own child.
        unsafe { libc::kill(i32::try_from(child.id()).unwrap(), signal) };
        child.wait().unwrap()
    }

    /// SIGTERM, and checks the exit was clean.
    pub fn stop(&mut self) {
        let status = self.signal(libc::SIGTERM);
        assert!(
            status.success(),
            "daemon exited with {status}:\n{}",
            self.log_text()
        );
    }

    /// Waits (briefly) until nothing is mounted at the mount point any more.
    pub fn wait_unmounted(&self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
            let needle = format!(" {} ", self.mount.display());
            if !mounts.contains(&needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Runs `script` with bash, `M` set to the mount point.
    pub fn sh(&self, script: &str) -> Output {
        bash(&self.mount, script)
    }

    /// Runs `script`, asserts success, returns stdout.
    pub fn ok(&self, script: &str) -> String {
        let o = self.sh(script);
        assert!(
            o.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }

    /// Runs `script`, asserts failure, returns stderr.
    pub fn fails(&self, script: &str) -> String {
        let o = self.sh(script);
        assert!(
            !o.status.success(),
            "{script} should fail; stdout: {}",
            String::from_utf8_lossy(&o.stdout)
        );
        String::from_utf8(o.stderr).unwrap()
    }

    /// Runs the `avix` binary with `args`.
    pub fn avix(&self, args: &[&str]) -> Output {
        Command::new(&self.bin).args(args).output().unwrap()
    }
}

impl std::fmt::Debug for TestDaemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestDaemon")
            .field("root", &self.root)
            .field("mount", &self.mount)
            .finish_non_exhaustive()
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(i32::try_from(c.id()).unwrap_or(0), libc::SIGTERM) };
            let _ = c.wait();
        }
        if !self.wait_unmounted()
            && let Ok(c) = std::ffi::CString::new(self.mount.as_os_str().as_encoded_bytes())
        {
            // SAFETY: a valid path; detaching a leftover test mount.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}
