//! Tier-3 guests: boot a Debian kernel under qemu TCG with a busybox initramfs and run one shell
//! script in it as root, through the harness in `tests/vm/` (see its README).
//!
//! ```ignore
//! let vm = match vm::available_with(&[vm::Need::Udev, vm::Need::Md]) {
//!     Ok(vm) => vm,
//!     Err(reason) => return common::skip(&format!("my_test (tier 3, qemu guest): {reason}")),
//! };
//! let dir = tempfile::tempdir().unwrap();
//! let disk = vm::sparse_image(dir.path(), "a.img", 384);
//! let run = vm
//!     .guest("my_test", "tv-result serial=\"$(cat /sys/block/vda/serial)\"")
//!     .udev()
//!     .md()
//!     .drive(vm::Drive::virtio(&disk, "SER-A"))
//!     .run();
//! run.expect_code(0);
//! assert_eq!(run.result("serial"), "SER-A", "{}", run.context());
//! ```
//!
//! The script reports with `tv-result NAME=TEXT NAME:=JSON ...` (one `TIERVAULT-RESULT {...}`
//! console line each); [`Run::results`] holds those objects in order. Every failure message built
//! by [`Run`] ends with the tail of the console, so a CI log is enough to see what the guest did.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

/// `run-guest.sh`: qemu was SIGKILLed on the `--kill-on` text (a power cut).
pub const KILLED: i32 = 120;
/// `run-guest.sh`: the wall-clock limit expired first.
pub const TIMEOUT: i32 = 124;
/// `run-guest.sh`: qemu ended without the guest's end line (kernel panic, qemu error).
pub const NO_END: i32 = 125;
/// Console lines the failure messages of a [`Run`] show.
pub const TAIL_LINES: usize = 150;
/// What `tv-result` prints before its JSON object.
pub const RESULT_PREFIX: &str = "TIERVAULT-RESULT ";

/// Free space the VM tests need where they write: the images are sparse, but md's initial
/// resync writes every member in full (a pool test writes about 5 GiB), and the kernel, the
/// initramfs and the systemd root file system are cached under [`work_dir`].
pub const MIN_FREE_BYTES: u64 = 6 << 30;

static ONE_GUEST: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// What a run's exit code means, as run-guest.sh defines it.
pub fn describe_code(code: i32) -> &'static str {
    match code {
        0 => "the guest script succeeded",
        2 => "run-guest.sh usage error or missing tool",
        110 => "guest init: cannot mount cgroup2",
        111 => "guest init: a module failed to load",
        112..=115 => "guest init: scratch disk problem",
        116 => "guest init: systemd-udevd did not start",
        117 => "guest init: `udevadm settle` timed out",
        KILLED => "qemu killed on the --kill-on text (power cut)",
        TIMEOUT => "timeout: the guest did not finish in time",
        NO_END => "qemu ended without the guest's end line (kernel panic or qemu error)",
        _ => "the guest script's own exit code",
    }
}

/// What a guest needs of the host beyond the base harness.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// systemd-udevd and the rules (`build-guest.sh --udev`).
    Udev,
    /// mdadm, xfsprogs and util-linux tools (`build-guest.sh --md`).
    Md,
}

/// The harness scripts, checked to have what they need on this host.
#[derive(Clone, Debug)]
pub struct Vm {
    build_guest: PathBuf,
    run_guest: PathBuf,
}

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives one level below the workspace root")
        .to_path_buf()
}

/// The harness's cache directory (`$TIERVAULT_VM_WORK`, default `<workspace>/target/vm`), where
/// the console logs of [`Guest::run`] go too (`logs/<name>.log`).
pub fn work_dir() -> PathBuf {
    std::env::var_os("TIERVAULT_VM_WORK")
        .map(|d| workspace().join(d))
        .unwrap_or_else(|| workspace().join("target/vm"))
}

/// The base harness when this host can boot guests, else the reason it cannot (for
/// `common::skip`).
pub fn available() -> Result<Vm, String> {
    available_with(&[])
}

/// [`available`], also checking the host tools the given features copy into the guest.
pub fn available_with(needs: &[Need]) -> Result<Vm, String> {
    let dir = workspace().join("tests/vm");
    let vm = Vm {
        build_guest: dir.join("build-guest.sh"),
        run_guest: dir.join("run-guest.sh"),
    };
    let mut build_args = vec!["--check"];
    if needs.contains(&Need::Udev) {
        build_args.push("--udev");
    }
    if needs.contains(&Need::Md) {
        build_args.push("--md");
    }
    let missing: Vec<String> = [
        (&vm.build_guest, build_args),
        (&vm.run_guest, vec!["--check"]),
    ]
    .into_iter()
    .filter_map(|(script, args)| {
        let why = missing_tools(script, &args)?;
        Some(format!("{}: {why}", script.display()))
    })
    .collect();
    if !missing.is_empty() {
        return Err(missing.join("; "));
    }
    for dir in [std::env::temp_dir(), workspace()] {
        if let Some(free) = free_bytes(&dir).filter(|f| *f < MIN_FREE_BYTES) {
            return Err(format!(
                "only {:.1} GiB free in {}; the VM tests need {} GiB for disk images and caches",
                free as f64 / (1u64 << 30) as f64,
                dir.display(),
                MIN_FREE_BYTES >> 30
            ));
        }
    }
    Ok(vm)
}

/// Bytes an unprivileged writer may still use on the file system holding `dir`.
fn free_bytes(dir: &Path) -> Option<u64> {
    let st = rustix::fs::statvfs(dir).ok()?;
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}

/// `bash SCRIPT ARGS` (a `--check`): `None` when it passes, else what it printed.
fn missing_tools(script: &Path, args: &[&str]) -> Option<String> {
    match Command::new("bash").arg(script).args(args).output() {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout).trim(),
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Some(format!("cannot run bash {}: {e}", script.display())),
    }
}

/// Status, stdout and stderr of a finished command, for failure messages.
pub fn describe_output(o: &Output) -> String {
    format!(
        "{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// An executable cargo built.
#[derive(Clone, Debug)]
pub struct Executable {
    /// The target's name (`vaultctl`, `index`, ...).
    pub name: String,
    /// The target's kinds (`bin`, `bench`, `test`, ...).
    pub kind: Vec<String>,
    pub path: PathBuf,
}

/// Runs `cargo ARGS --message-format=json` in the workspace (same target directory:
/// `CARGO_TARGET_DIR` is inherited) and returns the executables it reports, in order.
/// Panics with cargo's output when it fails.
pub fn cargo_executables(args: &[&str]) -> Vec<Executable> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let workspace = workspace();
    let out = Command::new(cargo)
        .current_dir(&workspace)
        .args(args)
        .args(["--message-format=json", "--manifest-path"])
        .arg(workspace.join("Cargo.toml"))
        .output()
        .unwrap_or_else(|e| panic!("running `cargo {}`: {e}", args.join(" ")));
    assert!(
        out.status.success(),
        "`cargo {}` failed: {}",
        args.join(" "),
        describe_output(&out)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .filter_map(|m| {
            Some(Executable {
                name: m["target"]["name"].as_str()?.to_string(),
                kind: m["target"]["kind"]
                    .as_array()?
                    .iter()
                    .filter_map(|k| Some(k.as_str()?.to_string()))
                    .collect(),
                path: PathBuf::from(m["executable"].as_str()?),
            })
        })
        .collect()
}

/// The binaries of workspace packages, built for the guest with `cargo build --release -p PKG...`
/// (the guest runs them under emulation: a debug build would be several times slower), by
/// binary name. `$TIERVAULT_VM_BIN_DIR` skips the build: every executable file in that
/// directory is taken instead.
pub fn release_binaries(packages: &[&str]) -> BTreeMap<String, PathBuf> {
    if let Some(dir) = std::env::var_os("TIERVAULT_VM_BIN_DIR") {
        let dir = PathBuf::from(dir);
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("TIERVAULT_VM_BIN_DIR {}: {e}", dir.display()));
        return entries
            .filter_map(|e| e.ok())
            .filter(|e| {
                use std::os::unix::fs::PermissionsExt;
                e.metadata()
                    .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            })
            .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
            .collect();
    }
    let mut args = vec!["build", "--release"];
    for p in packages {
        args.extend(["-p", p]);
    }
    let bins: BTreeMap<String, PathBuf> = cargo_executables(&args)
        .into_iter()
        .filter(|e| e.kind.iter().any(|k| k == "bin"))
        .map(|e| (e.name, e.path))
        .collect();
    assert!(
        !bins.is_empty(),
        "`cargo build --release -p {}` reported no binaries",
        packages.join(" -p ")
    );
    bins
}

/// A sparse raw disk image of `mib` MiB at `dir/name` (blank: reads as zeros). Replaces an
/// existing file.
pub fn sparse_image(dir: &Path, name: &str, mib: u64) -> PathBuf {
    let path = dir.join(name);
    let f = std::fs::File::create(&path)
        .unwrap_or_else(|e| panic!("creating disk image {}: {e}", path.display()));
    f.set_len(mib << 20)
        .unwrap_or_else(|e| panic!("sizing disk image {}: {e}", path.display()));
    path
}

/// How a disk is attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bus {
    /// virtio-blk: `/dev/vdX` in the order attached, serial in `/sys/block/vdX/serial`,
    /// `/dev/disk/by-id/virtio-SERIAL` with udev.
    Virtio,
    /// NVMe: `/dev/nvmeXn1` (names not guaranteed to follow the order attached), serial in
    /// `/sys/block/nvmeXn1/device/serial` padded with spaces to 20 bytes,
    /// `/dev/disk/by-id/nvme-QEMU_NVMe_Ctrl_SERIAL` with udev.
    Nvme,
}

/// A raw disk image with a serial number (1-20 of `A-Z a-z 0-9 . _ -`; empty: none for
/// virtio-blk, `TVNVME<n>` for NVMe).
#[derive(Clone, Debug)]
pub struct Drive {
    pub path: PathBuf,
    pub serial: String,
    pub bus: Bus,
}

impl Drive {
    pub fn virtio(path: impl Into<PathBuf>, serial: &str) -> Drive {
        Drive {
            path: path.into(),
            serial: serial.to_string(),
            bus: Bus::Virtio,
        }
    }

    pub fn nvme(path: impl Into<PathBuf>, serial: &str) -> Drive {
        Drive {
            path: path.into(),
            serial: serial.to_string(),
            bus: Bus::Nvme,
        }
    }

    fn arg(&self) -> String {
        let path = self.path.to_str().expect("disk image paths are UTF-8");
        assert!(
            !path.contains(','),
            "disk image path {path} contains a comma"
        );
        let bus = match self.bus {
            Bus::Virtio => "virtio",
            Bus::Nvme => "nvme",
        };
        if self.serial.is_empty() {
            format!("{path},if={bus}")
        } else {
            format!("{path},serial={},if={bus}", self.serial)
        }
    }
}

/// The kernel and initramfs a guest boots.
#[derive(Clone, Debug)]
pub struct Built {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// How long build-guest.sh took (0.1 s when cached, a few seconds for a new initramfs).
    pub elapsed: Duration,
}

/// One guest: the script and what goes into the initramfs, the disks and the qemu options.
/// [`Guest::run`] builds and boots it; the same `Guest` can run again (e.g. on the same disk
/// images after a power cut).
#[derive(Clone, Debug)]
pub struct Guest<'a> {
    vm: &'a Vm,
    name: String,
    script: String,
    binaries: Vec<(PathBuf, String)>,
    files: Vec<(PathBuf, String)>,
    modules: Vec<String>,
    udev: bool,
    md: bool,
    udev_rules: Vec<String>,
    scratch: Option<PathBuf>,
    drives: Vec<Drive>,
    hotplug: Vec<Drive>,
    mem_mib: u64,
    timeout: Duration,
    kill_on: Option<String>,
    cache: Option<String>,
    append: Option<String>,
    ipmi_bmc: Option<u16>,
}

impl Vm {
    /// A guest named `name` (console log `logs/<name>.log` under [`work_dir`], replaced by the
    /// next run of that name: use one name per test and boot) running `script` with busybox `sh` as root. Defaults: 512 MiB, 300 s.
    pub fn guest(&self, name: &str, script: &str) -> Guest<'_> {
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
            "guest name {name:?}: use A-Z a-z 0-9 - _ ."
        );
        Guest {
            vm: self,
            name: name.to_string(),
            script: script.to_string(),
            binaries: Vec::new(),
            files: Vec::new(),
            modules: Vec::new(),
            udev: false,
            md: false,
            udev_rules: Vec::new(),
            scratch: None,
            drives: Vec::new(),
            hotplug: Vec::new(),
            mem_mib: 512,
            timeout: Duration::from_secs(300),
            kill_on: None,
            cache: None,
            append: None,
            ipmi_bmc: None,
        }
    }
}

impl<'a> Guest<'a> {
    /// Copies a host executable (and its libraries) to `guest_path`. Note that busybox `sh` runs
    /// its own applet for a name it has (`stat`, `mount`, ...), whatever PATH says: call such
    /// binaries by their full path.
    pub fn binary(mut self, host: impl Into<PathBuf>, guest_path: &str) -> Self {
        self.binaries.push((host.into(), guest_path.to_string()));
        self
    }

    /// Copies a file or a directory to `guest_path`.
    pub fn file(mut self, host: impl Into<PathBuf>, guest_path: &str) -> Self {
        self.files.push((host.into(), guest_path.to_string()));
        self
    }

    /// Loads a kernel module (and its dependencies) at boot, after the harness's own.
    pub fn module(mut self, name: &str) -> Self {
        self.modules.push(name.to_string());
        self
    }

    /// systemd-udevd runs and has settled before the script (`build-guest.sh --udev`).
    pub fn udev(mut self) -> Self {
        self.udev = true;
        self
    }

    /// A further udev rules file (a name from /lib/udev/rules.d or a host path); implies udev.
    pub fn udev_rules(mut self, rules: &str) -> Self {
        self.udev = true;
        self.udev_rules.push(rules.to_string());
        self
    }

    /// mdadm, mkfs.xfs, xfs_repair, blkid, wipefs, lsblk and the md and xfs modules
    /// (`build-guest.sh --md`).
    pub fn md(mut self) -> Self {
        self.md = true;
        self
    }

    /// The first virtio disk, mounted ext4 on `$TV_SCRATCH` (formatted when blank).
    pub fn scratch(mut self, image: impl Into<PathBuf>) -> Self {
        self.scratch = Some(image.into());
        self
    }

    /// A disk, attached after the scratch disk and the drives added before it.
    pub fn drive(mut self, drive: Drive) -> Self {
        self.drives.push(drive);
        self
    }

    /// A disk inserted while the guest runs (PCI hot-plug), when the script prints
    /// `TIERVAULT-HOTPLUG <serial>` (run-guest.sh `--hotplug`); it needs a serial.
    pub fn hotplug(mut self, drive: Drive) -> Self {
        assert!(
            !drive.serial.is_empty(),
            "a hot-plugged disk needs a serial"
        );
        self.hotplug.push(drive);
        self
    }

    pub fn mem_mib(mut self, mib: u64) -> Self {
        self.mem_mib = mib;
        self
    }

    /// Wall-clock limit of the boot-to-power-off run (run-guest.sh `--timeout`).
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = limit;
        self
    }

    /// Power cut: qemu is SIGKILLed as soon as a console line contains `marker` (exit code
    /// [`KILLED`]).
    pub fn kill_on(mut self, marker: &str) -> Self {
        self.kill_on = Some(marker.to_string());
        self
    }

    /// qemu's cache mode for the disk images (run-guest.sh `--cache`; default writeback).
    pub fn cache(mut self, mode: &str) -> Self {
        self.cache = Some(mode.to_string());
        self
    }

    /// Extra kernel command line.
    pub fn append(mut self, args: &str) -> Self {
        self.append = Some(args.to_string());
        self
    }

    /// A BMC on the guest's KCS interface backed by an external simulator listening on
    /// 127.0.0.1:`port` with qemu's VM protocol (run-guest.sh `--ipmi-bmc`; e.g.
    /// `common::ipmisim::IpmiSim::vm_port`). The guest needs the modules `ipmi_si` and
    /// `ipmi_devintf` for `/dev/ipmi0`.
    pub fn ipmi_bmc(mut self, port: u16) -> Self {
        self.ipmi_bmc = Some(port);
        self
    }

    /// Builds (or finds cached) the kernel and initramfs. Panics with build-guest.sh's output
    /// when it fails.
    pub fn build(&self) -> Built {
        // The script file's name is not part of the initramfs digest (its content is).
        let mut script = tempfile::Builder::new()
            .prefix(&format!("{}-", self.name))
            .suffix(".sh")
            .tempfile()
            .expect("creating the guest script file");
        script
            .write_all(self.script.as_bytes())
            .expect("writing the guest script");
        let mut cmd = Command::new("bash");
        cmd.current_dir(workspace()).arg(&self.vm.build_guest);
        for (host, guest) in &self.binaries {
            cmd.arg("-b").arg(format!("{}:{guest}", host.display()));
        }
        for (host, guest) in &self.files {
            cmd.arg("-f").arg(format!("{}:{guest}", host.display()));
        }
        for m in &self.modules {
            cmd.args(["-m", m]);
        }
        if self.udev {
            cmd.arg("--udev");
        }
        for r in &self.udev_rules {
            cmd.args(["--udev-rules", r]);
        }
        if self.md {
            cmd.arg("--md");
        }
        cmd.arg(script.path());
        let t = Instant::now();
        let out = cmd.output().expect("running build-guest.sh");
        let elapsed = t.elapsed();
        assert!(
            out.status.success(),
            "build-guest.sh for guest {} failed: {}",
            self.name,
            describe_output(&out)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let path_of = |key: &str| {
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .map(PathBuf::from)
                .unwrap_or_else(|| panic!("build-guest.sh printed no {key} line: {stdout}"))
        };
        Built {
            kernel: path_of("KERNEL="),
            initrd: path_of("INITRD="),
            elapsed,
        }
    }

    /// Builds the guest, boots it and waits for the end (power-off, power cut, timeout).
    /// Panics only when the harness itself cannot run; the guest's outcome is in the [`Run`].
    pub fn run(&self) -> Run {
        self.boot(&self.build())
    }

    /// Boots a kernel and initramfs built elsewhere (e.g. one that switches to a root image
    /// attached as a drive) with this guest's disks and options; the script, binaries, files,
    /// modules and udev/md flags are not used. Otherwise as [`run`](Self::run).
    pub fn boot(&self, built: &Built) -> Run {
        let logs = work_dir().join("logs");
        std::fs::create_dir_all(&logs)
            .unwrap_or_else(|e| panic!("creating {}: {e}", logs.display()));
        let log = logs.join(format!("{}.log", self.name));
        let mut cmd = Command::new("bash");
        cmd.current_dir(workspace())
            .arg(&self.vm.run_guest)
            .arg("--kernel")
            .arg(&built.kernel)
            .arg("--initrd")
            .arg(&built.initrd)
            .args(["--mem", &self.mem_mib.to_string()])
            .args(["--timeout", &self.timeout.as_secs().max(1).to_string()])
            .arg("--log")
            .arg(&log);
        if let Some(scratch) = &self.scratch {
            cmd.arg("--scratch").arg(scratch);
        }
        for d in &self.drives {
            cmd.args(["--drive", &d.arg()]);
        }
        for d in &self.hotplug {
            cmd.args(["--hotplug", &d.arg()]);
        }
        if let Some(marker) = &self.kill_on {
            cmd.args(["--kill-on", marker]);
        }
        if let Some(mode) = &self.cache {
            cmd.args(["--cache", mode]);
        }
        if let Some(args) = &self.append {
            cmd.args(["--append", args]);
        }
        if let Some(port) = self.ipmi_bmc {
            cmd.args(["--ipmi-bmc", &port.to_string()]);
        }
        // Its own process group, so that a run-guest.sh that outlives its own timeout is
        // stopped together with its qemu.
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        // Guests run one at a time: two TCG guests on a 2-core machine each take twice as long
        // and both risk their timeouts. (A test that panicked while holding the turn poisons
        // the lock; the next guest still runs.)
        let _turn = ONE_GUEST
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let started = Instant::now();
        let mut child = cmd.spawn().expect("starting run-guest.sh");
        let mut stdout = child.stdout.take().expect("piped stdout");
        let mut stderr = child.stderr.take().expect("piped stderr");
        let out_reader = thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = stdout.read_to_end(&mut buf);
            buf
        });
        let err_reader = thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = stderr.read_to_end(&mut buf);
            buf
        });
        // run-guest.sh enforces the timeout; this is the safety net should it hang itself.
        let deadline = started + self.timeout + Duration::from_secs(60);
        let status = loop {
            match child.try_wait().expect("waiting for run-guest.sh") {
                Some(status) => break Some(status),
                None if Instant::now() >= deadline => {
                    let group = rustix::process::Pid::from_child(&child);
                    let _ =
                        rustix::process::kill_process_group(group, rustix::process::Signal::Kill);
                    let _ = child.wait();
                    break None;
                }
                None => thread::sleep(Duration::from_millis(100)),
            }
        };
        let elapsed = started.elapsed();
        let console =
            String::from_utf8_lossy(&out_reader.join().unwrap_or_default()).replace('\r', "");
        let stderr = String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned();
        let code = match status {
            Some(s) => s.code().unwrap_or(NO_END),
            None => TIMEOUT,
        };
        let results = console
            .lines()
            .filter_map(|l| Some(l.split_once(RESULT_PREFIX)?.1.trim()))
            .map(|json| {
                serde_json::from_str(json)
                    .unwrap_or_else(|_| serde_json::json!({ "unparsed": json }))
            })
            .collect();
        Run {
            name: self.name.clone(),
            code,
            elapsed,
            build: built.elapsed,
            console,
            stderr,
            log,
            results,
        }
    }
}

/// The outcome of one boot.
#[derive(Clone, Debug)]
pub struct Run {
    pub name: String,
    /// run-guest.sh's exit code: the script's own, or [`KILLED`], [`TIMEOUT`], [`NO_END`],
    /// 110-117 (see [`describe_code`]).
    pub code: i32,
    /// qemu start to its end (build excluded).
    pub elapsed: Duration,
    /// How long build-guest.sh took.
    pub build: Duration,
    /// The serial console, carriage returns removed.
    pub console: String,
    /// run-guest.sh's own messages.
    pub stderr: String,
    /// Where the console was written as it arrived.
    pub log: PathBuf,
    /// The `tv-result` objects, in order (a line that is not JSON becomes
    /// `{"unparsed": "<text>"}`).
    pub results: Vec<Value>,
}

impl Run {
    /// The last `lines` console lines.
    pub fn tail(&self, lines: usize) -> String {
        let all: Vec<&str> = self.console.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// What a failure message needs: guest, code and its meaning, run-guest.sh's words, the
    /// log's path and the last [`TAIL_LINES`] console lines.
    pub fn context(&self) -> String {
        format!(
            "guest {}: exit code {} ({}) after {:.1} s; run-guest.sh: {}\nconsole log: {}\n\
             --- last {TAIL_LINES} console lines ---\n{}\n--- end of console ---",
            self.name,
            self.code,
            describe_code(self.code),
            self.elapsed.as_secs_f64(),
            self.stderr.trim(),
            self.log.display(),
            self.tail(TAIL_LINES)
        )
    }

    /// Panics with `what` and the [`context`](Self::context).
    #[track_caller]
    pub fn fail(&self, what: impl Display) -> ! {
        panic!("{what}\n{}", self.context())
    }

    /// Panics with `what` and the context unless `cond`.
    #[track_caller]
    pub fn ensure(&self, cond: bool, what: impl Display) {
        if !cond {
            self.fail(what)
        }
    }

    /// Panics with the context unless the run ended with `code`.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
        if self.code != code {
            self.fail(format_args!(
                "guest {}: expected exit code {code} ({}), got {}",
                self.name,
                describe_code(code),
                self.code
            ));
        }
        self
    }

    /// The value of `key` in the first result object that has it; panics with the context
    /// when none has.
    #[track_caller]
    pub fn result(&self, key: &str) -> &Value {
        self.results
            .iter()
            .find_map(|r| r.get(key))
            .unwrap_or_else(|| self.fail(format_args!("the guest reported no result {key:?}")))
    }

    /// `result(key)` as a string (panics with the context when it is not one).
    #[track_caller]
    pub fn result_str(&self, key: &str) -> &str {
        let v = self.result(key);
        v.as_str()
            .unwrap_or_else(|| self.fail(format_args!("result {key:?} = {v} is not a string")))
    }

    /// `result(key)` as an integer (panics with the context when it is not one).
    #[track_caller]
    pub fn result_i64(&self, key: &str) -> i64 {
        let v = self.result(key);
        v.as_i64()
            .unwrap_or_else(|| self.fail(format_args!("result {key:?} = {v} is not an integer")))
    }

    /// The guest uptime (s) at the init log line ending with `what` (`init start`,
    /// `udev settled`, `running /test.sh`, ...).
    pub fn uptime_at(&self, what: &str) -> Option<f64> {
        self.console
            .lines()
            .filter(|l| l.ends_with(what))
            .find_map(|l| {
                let rest = l.split_once("tiervault-guest [")?.1;
                rest.split_once("s]")?.0.parse().ok()
            })
    }
}
