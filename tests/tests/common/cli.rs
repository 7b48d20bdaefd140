//! Running `vaultctl` as a black box: locating the binary, a vault fixture, and checks on the
//! exit code and output of a run.

use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, OnceLock};

use serde_json::Value;
use tempfile::TempDir;

/// Path of the `vaultctl` binary under test.
///
/// `$VAULTCTL_BIN` wins when set. Otherwise `vaultctl` is another package of the workspace, so
/// `CARGO_BIN_EXE_vaultctl` does not exist here: build it once per test process, in the profile
/// this test binary was built with.
pub fn vaultctl() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| workspace_bin("VAULTCTL_BIN", "vaultctl", "vaultctl"))
}

/// A binary of another package of the workspace: `$env_var` when set, else `bin` of `package`
/// built with a nested `cargo build` in the profile this test binary was built with. Callers
/// cache the result (one build per test process).
pub fn workspace_bin(env_var: &str, package: &str, bin: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(env_var) {
        return PathBuf::from(path);
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives one level below the workspace root")
        .to_path_buf();
    let release = !cfg!(debug_assertions);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    // Relative $CARGO_TARGET_DIR values are resolved against the workspace root, below.
    cmd.current_dir(&workspace)
        .args(["build", "-p", package, "--manifest-path"])
        .arg(workspace.join("Cargo.toml"));
    if release {
        cmd.arg("--release");
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running `cargo build -p {package}`: {e}"));
    assert!(
        out.status.success(),
        "`cargo build -p {package}` failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(|d| workspace.join(d))
        .unwrap_or_else(|| workspace.join("target"));
    let path = target
        .join(if release { "release" } else { "debug" })
        .join(bin);
    assert!(
        path.is_file(),
        "cargo built {bin} but {} is missing",
        path.display()
    );
    path
}

/// Run `spawn` again while it fails with ETXTBSY: a binary copied for an unprivileged user
/// (`Vault::as_user`) can briefly stay open for writing in a child another test thread forked
/// while the copy was being written (the descriptor lives until that child's exec).
fn retry_busy<T>(mut spawn: impl FnMut() -> std::io::Result<T>) -> std::io::Result<T> {
    let mut tries = 0;
    loop {
        match spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 100 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

/// How commands authenticate to a vault.
#[derive(Clone, Debug)]
pub enum Auth {
    /// `--key-file F`: fast, used by almost every test.
    KeyFile(PathBuf),
    /// `$VAULT_PASSPHRASE`: exercises Argon2id; made with a short `--kdf-time-ms`.
    Passphrase(String),
}

/// A vault in a fresh temporary directory, with room for source trees and restore targets.
///
/// Layout: `<tmp>/vault` (the vault), `<tmp>/key` (the key file), `<tmp>/<name>` (scratch).
pub struct Vault {
    /// Owns every path below; removed when the last fixture sharing it is dropped.
    pub tmp: Arc<TempDir>,
    /// The vault directory.
    pub dir: PathBuf,
    pub auth: Auth,
    /// The binary this fixture runs (a copy when commands run as another user).
    pub bin: PathBuf,
    /// Run every command as this (uid, gid) instead of ourselves.
    pub user: Option<(u32, u32)>,
    /// Extra environment for every command (e.g. `TIERVAULT_NO_URING=1`).
    pub envs: Vec<(OsString, OsString)>,
}

impl Vault {
    /// A vault initialised with a new key file (no KDF cost).
    pub fn new() -> Vault {
        Self::build(None, Vec::new())
    }

    /// A key-file vault whose every command runs with the extra environment `envs`.
    pub fn with_env(envs: &[(&str, &str)]) -> Vault {
        let envs = envs.iter().map(|(k, v)| (k.into(), v.into())).collect();
        Self::build(None, envs)
    }

    /// A key-file vault whose every command runs as `(uid, gid)`; needs root.
    ///
    /// The temporary directory is made traversable and handed to that user, and the binary is
    /// copied into it, so that the user reaches everything it needs.
    pub fn as_user(uid: u32, gid: u32) -> Vault {
        Self::build(Some((uid, gid)), Vec::new())
    }

    /// A vault protected by `passphrase` (Argon2id calibrated to 20 ms to keep tests fast).
    pub fn with_passphrase(passphrase: &str) -> Vault {
        let mut v = Self::unopened(None, Vec::new());
        v.auth = Auth::Passphrase(passphrase.to_owned());
        v.expect(0, ["init", "--kdf-time-ms", "20"]);
        v
    }

    fn build(user: Option<(u32, u32)>, envs: Vec<(OsString, OsString)>) -> Vault {
        let v = Self::unopened(user, envs);
        v.expect(0, ["init"]);
        v
    }

    /// The fixture with its directories made but `init` not yet run.
    fn unopened(user: Option<(u32, u32)>, envs: Vec<(OsString, OsString)>) -> Vault {
        let tmp = tempfile::Builder::new()
            .prefix("tiervault-e2e-")
            .tempdir()
            .expect("creating a temporary directory");
        let dir = tmp.path().join("vault");
        fs::create_dir(&dir).expect("creating the (empty) vault directory");
        let mut bin = vaultctl().to_path_buf();
        if let Some((uid, gid)) = user {
            // The build directory may sit below a directory the user cannot traverse.
            let copy = tmp.path().join("vaultctl");
            fs::copy(&bin, &copy).expect("copying vaultctl for an unprivileged user");
            bin = copy;
            fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755))
                .expect("making the temporary directory traversable");
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
                .expect("handing the vault directory to the unprivileged user");
        }
        let key = if user.is_some() {
            // The unprivileged user must be able to create its key file.
            dir.with_file_name("userkey").join("key")
        } else {
            tmp.path().join("key")
        };
        if let Some((uid, gid)) = user {
            let parent = key.parent().expect("key path has a parent");
            fs::create_dir(parent).expect("creating the key directory");
            std::os::unix::fs::chown(parent, Some(uid), Some(gid))
                .expect("handing the key directory to the unprivileged user");
        }
        Vault {
            tmp: Arc::new(tmp),
            dir,
            auth: Auth::KeyFile(key),
            bin,
            user,
            envs,
        }
    }

    /// The same credentials, binary and environment, for another vault directory (e.g. a copy
    /// of this one).
    pub fn at(&self, dir: PathBuf) -> Vault {
        Vault {
            tmp: Arc::clone(&self.tmp),
            dir,
            auth: self.auth.clone(),
            bin: self.bin.clone(),
            user: self.user,
            envs: self.envs.clone(),
        }
    }

    /// A path under the fixture's temporary directory (not created).
    pub fn scratch(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// The key file, for key-file vaults.
    pub fn key_file(&self) -> Option<&Path> {
        match &self.auth {
            Auth::KeyFile(k) => Some(k),
            Auth::Passphrase(_) => None,
        }
    }

    /// `vaultctl --vault DIR <auth> --quiet ARGS…` in a clean environment ([`bare_command`]).
    pub fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = bare_command(&self.bin);
        cmd.arg("--vault").arg(&self.dir);
        match &self.auth {
            Auth::KeyFile(k) => {
                cmd.arg("--key-file").arg(k);
            }
            Auth::Passphrase(p) => {
                cmd.env("VAULT_PASSPHRASE", p);
            }
        }
        cmd.arg("--quiet").args(args);
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        if let Some((uid, gid)) = self.user {
            cmd.uid(uid).gid(gid);
        }
        cmd
    }

    /// Runs a command to completion and returns its output, whatever the exit code.
    pub fn run<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        retry_busy(|| self.command(&args).output())
            .unwrap_or_else(|e| panic!("spawning {} {:?}: {e}", self.bin.display(), args))
    }

    /// Runs a command with `input` on its standard input.
    pub fn run_with_stdin<I, S>(&self, args: I, input: &[u8]) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let mut child = retry_busy(|| {
            self.command(&args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
        })
        .expect("spawning vaultctl");
        let mut stdin = child.stdin.take().expect("a piped stdin");
        // Feed stdin from a thread: the child may fill its stdout pipe before reading it all.
        std::thread::scope(|s| {
            s.spawn(move || {
                // A child that stops reading early (e.g. on a size mismatch) closes the pipe;
                // that is its business, not an error of the test.
                let _ = stdin.write_all(input);
            });
            child.wait_with_output().expect("waiting for vaultctl")
        })
    }

    /// Runs a command and asserts its exit code; the panic shows the command and its output.
    pub fn expect<I, S>(&self, code: i32, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let out = self.run(&args);
        check_exit(&out, code, &format!("vaultctl {}", show_args(&args)));
        out
    }

    /// Runs `ARGS… --json`, asserts exit code `code` and parses stdout.
    pub fn json<I, S>(&self, code: i32, args: I) -> Value
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        args.push("--json".into());
        let out = self.expect(code, &args);
        json_of(&out, &format!("vaultctl {}", show_args(&args)))
    }

    /// `backup PATHS… --json`, asserting success; returns the snapshot object.
    pub fn backup<P: AsRef<Path>>(&self, paths: &[P]) -> Value {
        let mut args: Vec<OsString> = vec!["backup".into()];
        args.extend(paths.iter().map(|p| p.as_ref().as_os_str().to_owned()));
        self.json(0, args)
    }

    /// `snapshots --json`: the snapshot objects, oldest first.
    pub fn snapshots(&self) -> Vec<Value> {
        match self.json(0, ["snapshots"]) {
            Value::Array(a) => a,
            other => panic!("`snapshots --json` printed a non-array: {other}"),
        }
    }

    /// `restore SNAP --target TARGET`, asserting success.
    pub fn restore(&self, snap: &str, target: &Path) {
        self.expect(
            0,
            [
                OsStr::new("restore"),
                OsStr::new(snap),
                OsStr::new("--target"),
                target.as_os_str(),
            ],
        );
    }
}

impl Default for Vault {
    fn default() -> Self {
        Self::new()
    }
}

/// `bin` with a clean environment: no inherited `$VAULT_DIR`/`$VAULT_PASSPHRASE`, and stdin
/// closed so that no passphrase prompt can wait for a terminal.
pub fn bare_command(bin: &Path) -> Command {
    let mut cmd = Command::new(bin);
    cmd.env_remove("VAULT_DIR")
        .env_remove("VAULT_PASSPHRASE")
        .stdin(Stdio::null());
    cmd
}

/// True when this process can start programs as `(uid, gid)` (root without CAP_SETUID, as in
/// some containers, cannot).
pub fn can_run_as(uid: u32, gid: u32) -> bool {
    Command::new("true")
        .uid(uid)
        .gid(gid)
        .status()
        .is_ok_and(|s| s.success())
}

/// The `id` of a snapshot object, which must be a string.
pub fn snap_id(snap: &Value) -> String {
    snap["id"]
        .as_str()
        .unwrap_or_else(|| panic!("snapshot object without a string id: {snap}"))
        .to_owned()
}

fn show_args(args: &[OsString]) -> String {
    args.iter()
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Exit status, stdout and stderr of a run, for failure messages.
pub fn describe(out: &Output) -> String {
    let mut s = String::new();
    match (out.status.code(), out.status.signal()) {
        (Some(c), _) => {
            let _ = write!(s, "exit code {c}");
        }
        (None, Some(sig)) => {
            let _ = write!(s, "killed by signal {sig}");
        }
        _ => {
            let _ = write!(s, "status {:?}", out.status);
        }
    }
    let _ = write!(
        s,
        "\n--- stdout ---\n{}\n--- stderr ---\n{}",
        truncate(&String::from_utf8_lossy(&out.stdout)),
        truncate(&String::from_utf8_lossy(&out.stderr))
    );
    s
}

fn truncate(s: &str) -> &str {
    const MAX: usize = 4000;
    if s.len() <= MAX {
        return s;
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Asserts that a run exited with `code`; `what` names the command in the panic.
pub fn check_exit(out: &Output, code: i32, what: &str) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}: expected exit code {code}, got {}",
        describe(out)
    );
}

/// Parses stdout as one JSON document.
pub fn json_of(out: &Output, what: &str) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{what}: stdout is not one JSON document ({e}); {}",
            describe(out)
        )
    })
}

/// The contract's error report: stderr holds one line starting with `error: `. Returns it.
pub fn error_line(out: &Output, what: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        lines.len() == 1 && lines[0].starts_with("error: "),
        "{what}: expected one stderr line starting with `error: `; {}",
        describe(out)
    );
    lines[0].to_owned()
}
