//! [`IpmiTool`]: the [`Bmc`] that drives `ipmitool`.
//!
//! Why ipmitool rather than speaking IPMI ourselves: RMCP+ session setup (RAKP, integrity and
//! confidentiality algorithms) and the kernel driver's ioctls are what ipmitool has had right
//! for twenty years; the health service needs readings, not another IPMI stack. Its output is
//! parsed by [`crate::parse`]; which listings are used, and why, is said there.

use std::path::Path;

use crate::config::{IpmiConfig, Transport};
use crate::error::{Error, Result};
use crate::model::{ChassisStatus, FruDevice, SelEntry, Sensor};
use crate::parse::{self, ParseError};
use crate::runner::{Invocation, ProcessRunner, RunError, RunOutput, Runner};
use crate::Bmc;

/// What ipmitool prints on stderr when it gets no session with the BMC: nothing answers, the
/// credentials are refused, or there is no kernel driver. All are "unreachable" to the health
/// service, which cannot tell a dead BMC from a wrong password and alerts on both.
const UNREACHABLE_MARKERS: &[&str] = &[
    "Unable to establish",
    "Could not open device",
    "Error in open session",
    "Activate Session",
    "Get Auth Capabilities",
    "Get Session Challenge",
    "RAKP",
    "No response from remote controller",
    "Address lookup for",
];

/// The BMC, read through ipmitool.
pub struct IpmiTool<R: Runner = ProcessRunner> {
    config: IpmiConfig,
    runner: R,
}

impl IpmiTool {
    /// Checks the settings; contacts nothing.
    pub fn new(config: IpmiConfig) -> Result<Self> {
        Self::with_runner(config, ProcessRunner)
    }
}

impl<R: Runner> IpmiTool<R> {
    /// With another [`Runner`]: the unit tests' captured outputs.
    pub fn with_runner(config: IpmiConfig, runner: R) -> Result<Self> {
        config.validate()?;
        Ok(IpmiTool { config, runner })
    }

    pub fn config(&self) -> &IpmiConfig {
        &self.config
    }

    /// The transport as errors name it: `/dev/ipmi0` or `host:port`.
    pub fn transport_label(&self) -> String {
        self.config.transport.label()
    }

    /// The full invocation of an ipmitool subcommand: transport options, then the words.
    pub fn invocation(&self, words: &[&str]) -> Result<Invocation> {
        // C locale: decimal points, not commas, and `%x` dates as MM/DD/YY. UTC: SEL times
        // convert to Unix time without knowing the BMC's host's zone.
        let mut env = vec![
            ("LC_ALL".to_string(), "C".to_string()),
            ("TZ".to_string(), "UTC".to_string()),
        ];
        let mut args: Vec<String> = Vec::new();
        match &self.config.transport {
            Transport::Local { device } => {
                args.extend(["-I".into(), "open".into()]);
                if let Some(n) = device {
                    args.extend(["-d".into(), n.to_string()]);
                }
            }
            Transport::Lan(lan) => {
                args.extend(
                    [
                        "-I",
                        "lanplus",
                        "-H",
                        &lan.host,
                        "-p",
                        &lan.port.to_string(),
                        "-U",
                        &lan.user,
                        "-C",
                        &lan.cipher_suite.to_string(),
                        "-N",
                        &lan.session_timeout_secs.to_string(),
                        "-R",
                        &lan.session_retries.to_string(),
                    ]
                    .map(String::from),
                );
                if let Some(file) = &lan.password_file {
                    // ipmitool would report an unreadable file as a session failure; say what
                    // is actually wrong.
                    if !Path::new(file).is_file() {
                        return Err(Error::Config(format!(
                            "password file {} does not exist",
                            file.display()
                        )));
                    }
                    args.extend(["-f".into(), file.to_string_lossy().into_owned()]);
                } else if let Some(var) = &lan.password_env {
                    let password = std::env::var(var).map_err(|_| {
                        Error::Config(format!("environment variable {var} holds no password"))
                    })?;
                    args.push("-E".into());
                    env.push(("IPMI_PASSWORD".into(), password));
                }
            }
        }
        args.extend(words.iter().map(|w| w.to_string()));
        Ok(Invocation {
            program: self.config.ipmitool.clone(),
            args,
            env,
            timeout: self.config.timeout(),
        })
    }

    /// Runs `ipmitool <transport> <words>` and returns its standard output.
    fn run(&self, words: &[&str]) -> Result<String> {
        let out = self.run_raw(words)?;
        classify(out, command_of(words), self.transport_label())
    }

    /// Runs `ipmitool <transport> <words>`; only failures to run at all are errors here.
    fn run_raw(&self, words: &[&str]) -> Result<RunOutput> {
        let command = command_of(words);
        let invocation = self.invocation(words)?;
        let transport = self.transport_label();
        match self.runner.run(&invocation) {
            Ok(out) => Ok(out),
            Err(RunError::NotFound) => Err(Error::ToolMissing {
                tool: "ipmitool".into(),
                path: self.config.ipmitool.display().to_string(),
            }),
            Err(RunError::TimedOut(after)) => Err(Error::Timeout {
                command,
                transport,
                after,
            }),
            Err(RunError::Io(source)) => Err(Error::Io { command, source }),
        }
    }

    fn parsed<T>(&self, words: &[&str], parse: fn(&str) -> Result<T, ParseError>) -> Result<T> {
        let stdout = self.run(words)?;
        parse(&stdout).map_err(|e| garbage(words, e))
    }
}

/// Turns a finished run into its output or the error it stands for.
fn classify(out: RunOutput, command: String, transport: String) -> Result<String> {
    let stderr = out.stderr.trim();
    if out.code != Some(0) {
        if let Some(line) = unreachable_line(stderr) {
            return Err(Error::Unreachable {
                transport,
                detail: line.to_string(),
            });
        }
        return Err(Error::Failed {
            command,
            status: out
                .code
                .map_or("killed by a signal".into(), |c| c.to_string()),
            stderr: stderr.chars().take(500).collect(),
        });
    }
    if out.truncated {
        return Err(Error::Garbage {
            command,
            line: String::new(),
            reason: format!("more than {} bytes of output", crate::runner::OUTPUT_LIMIT),
        });
    }
    Ok(out.stdout)
}

fn command_of(words: &[&str]) -> String {
    format!("ipmitool {}", words.join(" "))
}

/// Whether stderr says there was no session with the BMC; the line that says so.
fn unreachable_line(stderr: &str) -> Option<&str> {
    stderr
        .lines()
        .find(|l| UNREACHABLE_MARKERS.iter().any(|m| l.contains(m)))
        .map(str::trim)
}

fn garbage(words: &[&str], e: ParseError) -> Error {
    Error::Garbage {
        command: command_of(words),
        line: e.line,
        reason: if e.line_no == 0 {
            e.reason
        } else {
            format!("line {}: {}", e.line_no, e.reason)
        },
    }
}

impl<R: Runner> Bmc for IpmiTool<R> {
    fn sensors(&self) -> Result<Vec<Sensor>> {
        let sensors = self.parsed(&["sensor", "list"], parse::sensor::parse_sensor_list)?;
        let sdr = self.parsed(&["sdr", "elist"], parse::sensor::parse_sdr_elist)?;
        Ok(parse::sensor::merge(sensors, sdr))
    }

    fn sel(&self) -> Result<Vec<SelEntry>> {
        self.parsed(&["sel", "elist"], parse::sel::parse_sel)
    }

    fn fru(&self) -> Result<Vec<FruDevice>> {
        // `fru print` exits 1 when any located FRU device cannot be read (an empty PSU bay
        // says "Device not present"), after printing every device it could. That is an
        // inventory with a gap, not a failure: keep it when a session was made and the
        // listing is complete.
        let words = ["fru", "print"];
        let out = self.run_raw(&words)?;
        if out.code == Some(1)
            && !out.truncated
            && unreachable_line(&out.stderr).is_none()
            && out.stdout.starts_with("FRU Device Description")
        {
            return parse::fru::parse_fru(&out.stdout).map_err(|e| garbage(&words, e));
        }
        let stdout = classify(out, command_of(&words), self.transport_label())?;
        parse::fru::parse_fru(&stdout).map_err(|e| garbage(&words, e))
    }

    fn chassis(&self) -> Result<ChassisStatus> {
        self.parsed(&["chassis", "status"], parse::chassis::parse_chassis)
    }

    fn sel_clear(&self) -> Result<()> {
        self.run(&["sel", "clear"]).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::PathBuf;
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;
    use crate::config::LanConfig;
    use crate::model::SensorStatus;

    /// Answers each subcommand (the words after the transport options) with a canned result,
    /// and remembers what it was asked.
    #[derive(Default)]
    struct Canned {
        answers: HashMap<String, Result<RunOutput, String>>,
        seen: Mutex<Vec<Invocation>>,
    }

    impl Canned {
        fn answer(mut self, words: &str, out: RunOutput) -> Self {
            self.answers.insert(words.into(), Ok(out));
            self
        }

        fn fail(mut self, words: &str, how: &str) -> Self {
            self.answers.insert(words.into(), Err(how.into()));
            self
        }
    }

    impl Runner for Canned {
        fn run(&self, inv: &Invocation) -> Result<RunOutput, RunError> {
            self.seen.lock().expect("lock").push(inv.clone());
            let n = inv.args.len();
            let key = inv.args[n.saturating_sub(2)..].join(" ");
            match self.answers.get(&key) {
                Some(Ok(out)) => Ok(out.clone()),
                Some(Err(how)) if how == "timeout" => Err(RunError::TimedOut(inv.timeout)),
                Some(Err(_)) => Err(RunError::NotFound),
                None => panic!("unexpected command {key}"),
            }
        }
    }

    fn password_file() -> PathBuf {
        // Any existing file does for building the command line.
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")
    }

    fn lan() -> IpmiConfig {
        let mut lan = LanConfig::new("192.0.2.7", "admin", password_file());
        lan.port = 6230;
        IpmiConfig::new(Transport::Lan(lan))
    }

    fn tool(canned: Canned) -> IpmiTool<Canned> {
        IpmiTool::with_runner(lan(), canned).expect("valid")
    }

    fn data(name: &str) -> String {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("testdata")
            .join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn failed(stderr: &str) -> RunOutput {
        RunOutput {
            code: Some(1),
            stderr: stderr.into(),
            ..RunOutput::default()
        }
    }

    #[test]
    fn lan_command_line_keeps_the_password_off_it() {
        let t = tool(Canned::default());
        let inv = t.invocation(&["sensor", "list"]).expect("builds");
        let file = password_file().to_string_lossy().into_owned();
        let expected: Vec<String> = [
            "-I",
            "lanplus",
            "-H",
            "192.0.2.7",
            "-p",
            "6230",
            "-U",
            "admin",
            "-C",
            "3",
            "-N",
            "2",
            "-R",
            "2",
            "-f",
            &file,
            "sensor",
            "list",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(inv.args, expected);
        assert!(!inv.args.iter().any(|a| a == "-P"));
        assert!(inv.env.contains(&("TZ".into(), "UTC".into())));
        assert!(inv.env.contains(&("LC_ALL".into(), "C".into())));
        assert_eq!(inv.timeout, Duration::from_secs(60));
    }

    #[test]
    fn password_from_the_environment_goes_through_dash_e() {
        let mut cfg = lan();
        let Transport::Lan(l) = &mut cfg.transport else {
            unreachable!()
        };
        l.password_file = None;
        l.password_env = Some("PATH".into()); // any variable that is set
        let t = IpmiTool::with_runner(cfg, Canned::default()).expect("valid");
        let inv = t.invocation(&["chassis", "status"]).expect("builds");
        assert!(inv.args.contains(&"-E".to_string()));
        let path = std::env::var("PATH").expect("PATH");
        assert!(inv.env.contains(&("IPMI_PASSWORD".into(), path.clone())));
        assert!(!inv.args.contains(&path));

        let mut cfg = lan();
        let Transport::Lan(l) = &mut cfg.transport else {
            unreachable!()
        };
        l.password_file = None;
        l.password_env = Some("TIERVAULT_SURELY_UNSET_VARIABLE".into());
        let t = IpmiTool::with_runner(cfg, Canned::default()).expect("valid");
        assert!(matches!(t.chassis(), Err(Error::Config(_))));
    }

    #[test]
    fn local_command_line() {
        let cfg = IpmiConfig::new(Transport::Local { device: Some(1) });
        let t = IpmiTool::with_runner(cfg, Canned::default()).expect("valid");
        let inv = t.invocation(&["sel", "elist"]).expect("builds");
        assert_eq!(inv.args, ["-I", "open", "-d", "1", "sel", "elist"]);
        assert_eq!(t.transport_label(), "/dev/ipmi1");
    }

    #[test]
    fn a_missing_password_file_is_a_settings_error() {
        let cfg = IpmiConfig::new(Transport::Lan(LanConfig::new(
            "h",
            "u",
            PathBuf::from("/nonexistent/bmc.password"),
        )));
        let t = IpmiTool::with_runner(cfg, Canned::default()).expect("valid");
        let err = t.sensors().expect_err("no file");
        assert!(
            matches!(&err, Error::Config(m) if m.contains("/nonexistent/bmc.password")),
            "{err}"
        );
    }

    #[test]
    fn everything_from_captures() {
        let t = tool(
            Canned::default()
                .answer("sensor list", RunOutput::ok(data("sensor_list.fault.txt")))
                .answer("sdr elist", RunOutput::ok(data("sdr_elist.fault.txt")))
                .answer("sel elist", RunOutput::ok(data("sel_elist.fault.txt")))
                .answer("fru print", RunOutput::ok(data("fru_print.txt")))
                .answer(
                    "chassis status",
                    RunOutput::ok(data("chassis_status.on.txt")),
                )
                .answer("sel clear", RunOutput::ok(data("sel_clear.txt"))),
        );
        let sensors = t.sensors().expect("sensors");
        let psu = sensors
            .iter()
            .find(|s| s.name == "PSU1_Status")
            .expect("psu");
        assert!(psu.has_state("Failure detected"));
        let fan = sensors.iter().find(|s| s.name == "FAN1").expect("fan");
        assert_eq!(fan.status, SensorStatus::Critical);
        assert!(!t.sel().expect("sel").is_empty());
        assert_eq!(
            t.fru().expect("fru")[0].product_serial(),
            Some("TV-PRD-0003")
        );
        assert!(t.chassis().expect("chassis").power_on);
        t.sel_clear().expect("clear");
    }

    #[test]
    fn a_fru_listing_with_an_absent_device_is_kept() {
        // ipmitool exits 1 after listing every device when one is absent (captured).
        let out = RunOutput {
            code: Some(1),
            ..RunOutput::ok(data("fru_print.txt"))
        };
        let t = tool(Canned::default().answer("fru print", out));
        let fru = t.fru().expect("inventory with a gap");
        assert_eq!(fru.len(), 3);
        assert!(fru[2].note.is_some());
        // Exit 1 with nothing listed stays a failure.
        let t = tool(Canned::default().answer("fru print", failed("Error: something\n")));
        assert!(matches!(t.fru(), Err(Error::Failed { .. })));
    }

    #[test]
    fn an_empty_sel_is_empty() {
        let out = RunOutput {
            stderr: "SEL has no entries\n".into(),
            ..RunOutput::ok("")
        };
        let t = tool(Canned::default().answer("sel elist", out));
        assert!(t.sel().expect("sel").is_empty());
    }

    #[test]
    fn no_session_is_unreachable_naming_host_and_port() {
        let stderr = data("closed_port.stderr.txt");
        let t = tool(Canned::default().answer("chassis status", failed(&stderr)));
        match t.chassis() {
            Err(Error::Unreachable { transport, detail }) => {
                assert_eq!(transport, "192.0.2.7:6230");
                assert!(detail.contains("Unable to establish"), "{detail}");
            }
            other => panic!("{other:?}"),
        }
        let local = IpmiConfig::new(Transport::Local { device: None });
        let canned =
            Canned::default().answer("chassis status", failed(&data("no_device.stderr.txt")));
        let t = IpmiTool::with_runner(local, canned).expect("valid");
        let err = t.chassis().expect_err("no driver");
        assert!(
            matches!(&err, Error::Unreachable { transport, .. } if transport == "/dev/ipmi0"),
            "{err}"
        );
        assert!(err.to_string().contains("/dev/ipmi0"), "{err}");
    }

    #[test]
    fn other_failures_keep_their_words() {
        let t = tool(Canned::default().answer("fru print", failed("Invalid FRU size 0\n")));
        let err = t.fru().expect_err("fails");
        assert!(
            matches!(&err, Error::Failed { stderr, .. } if stderr.contains("Invalid FRU")),
            "{err}"
        );
    }

    #[test]
    fn missing_tool_and_timeout() {
        let t = tool(Canned::default().fail("chassis status", "missing"));
        assert!(matches!(t.chassis(), Err(Error::ToolMissing { .. })));
        let t = tool(Canned::default().fail("sel elist", "timeout"));
        let err = t.sel().expect_err("times out");
        assert!(
            matches!(&err, Error::Timeout { transport, .. } if transport == "192.0.2.7:6230"),
            "{err}"
        );
    }

    #[test]
    fn garbage_names_the_command_and_the_line() {
        let t = tool(Canned::default().answer(
            "sensor list",
            RunOutput::ok(data("handmade/sensor_list.truncated.txt")),
        ));
        match t.sensors() {
            Err(Error::Garbage { command, line, .. }) => {
                assert_eq!(command, "ipmitool sensor list");
                assert!(line.starts_with("FAN2"), "{line}");
            }
            other => panic!("{other:?}"),
        }
        let cut = RunOutput {
            truncated: true,
            ..RunOutput::ok("System Power : on\n")
        };
        let t = tool(Canned::default().answer("chassis status", cut));
        assert!(matches!(t.chassis(), Err(Error::Garbage { .. })));
    }

    #[test]
    fn the_real_runner_reports_a_missing_ipmitool() {
        let mut cfg = IpmiConfig::new(Transport::Local { device: None });
        cfg.ipmitool = PathBuf::from("/nonexistent/ipmitool");
        let t = IpmiTool::new(cfg).expect("valid");
        let err = t.chassis().expect_err("missing");
        assert!(
            matches!(&err, Error::ToolMissing { path, .. } if path == "/nonexistent/ipmitool"),
            "{err}"
        );
    }
}
