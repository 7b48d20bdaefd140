//! OpenIPMI's `ipmi_sim` as a LAN BMC on loopback, with the appliance's sensors, thresholds
//! and FRU inventory, for the tier-2 tests of `tiervault-ipmi` (TESTING.md section 3).
//!
//! ```ignore
//! if let Err(reason) = ipmisim::available() {
//!     return common::skip(&format!("my_test (tier 2, ipmi_sim): {reason}"));
//! }
//! let sim = IpmiSim::start();
//! let bmc = IpmiTool::new(sim.config()).unwrap();
//! sim.set_reading("FAN1", 300.0);          // below its lower critical threshold, logs events
//! sim.set_state("PSU1_Status", PSU_FAILURE, true);
//! ```
//!
//! Everything lives in a temporary directory: the generated `lan.conf` and `sim.emu`, the
//! password file, and ipmi_sim's state directory (`-s`; without it, it would persist SDRs and
//! the SEL under /var/ipmi_sim). `-n` keeps it off our stdin/stdout. Readings change at run
//! time through ipmi_sim's command console (a TCP port speaking telnet), which takes the same
//! commands as the `.emu` file and logs the threshold events a real BMC would.
//!
//! The same simulator is also a guest's BMC (tier 3): every simulator listens on
//! [`IpmiSim::vm_port`] for qemu's external-BMC protocol (`serial 15 127.0.0.1 PORT codec VM`
//! in lan.conf), which `vm::Guest::ipmi_bmc(sim.vm_port)` connects to (qemu's
//! `ipmi-bmc-extern` behind an `isa-ipmi-kcs` interface): the guest's kernel driver then serves
//! these sensors, SEL and FRU on `/dev/ipmi0`, and readings set here are what it reads.
//!
//! What ipmi_sim cannot simulate: its Get Chassis Status answers zero for every fault bit
//! (intrusion, fan, drive, power faults); only the power state follows `startcmd`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tiervault_ipmi::{IpmiConfig, LanConfig, Transport};

pub const USER: &str = "admin";
pub const PASSWORD: &str = "vaultpw";
/// The BMC's IPMB address, as every ipmi_sim command names it.
const BMC: &str = "0x20";

/// PSU1_Status's states (IPMI sensor type 0x08, Power Supply): presence and failure.
pub const PSU_PRESENCE: u8 = 0;
pub const PSU_FAILURE: u8 = 1;

/// One analog (threshold) sensor: reading = M × raw × 10^R, raw being the byte the SDR holds.
#[derive(Debug, Clone, Copy)]
pub struct Analog {
    pub number: u8,
    pub name: &'static str,
    /// IPMI sensor type (0x01 temperature, 0x02 voltage, 0x03 current, 0x04 fan, 0x08 PSU).
    pub sensor_type: u8,
    /// IPMI unit code (1 degrees C, 4 Volts, 5 Amps, 6 Watts, 18 RPM).
    pub unit: u8,
    pub unit_name: &'static str,
    pub m: u16,
    pub r_exp: i8,
    /// Entity ID and instance (3 processor, 7 system board, 10 power supply, 29 fan, 55 air
    /// inlet).
    pub entity: (u8, u8),
    /// lnr, lcr, lnc, unc, ucr, unr in the sensor's unit.
    pub thresholds: [Option<f64>; 6],
    /// The starting reading; `None` leaves the sensor unscanned (no reading: an empty bay).
    pub initial: Option<f64>,
}

impl Analog {
    pub fn step(&self) -> f64 {
        f64::from(self.m) * 10f64.powi(i32::from(self.r_exp))
    }

    /// The raw byte of a reading; panics when the SDR's formula cannot express it.
    pub fn raw(&self, value: f64) -> u8 {
        let raw = (value / self.step()).round();
        assert!(
            (0.0..=255.0).contains(&raw) && (raw * self.step() - value).abs() < 1e-6,
            "{}: {value} is not a multiple of {} within one byte",
            self.name,
            self.step()
        );
        raw as u8
    }
}

fn upper(unc: f64, ucr: f64, unr: f64) -> [Option<f64>; 6] {
    [None, None, None, Some(unc), Some(ucr), Some(unr)]
}

fn lower(lnr: f64, lcr: f64, lnc: f64) -> [Option<f64>; 6] {
    [Some(lnr), Some(lcr), Some(lnc), None, None, None]
}

/// The simulated appliance's analog sensors.
#[rustfmt::skip] // a table reads better than what rustfmt would make of it
pub fn analog_sensors() -> Vec<Analog> {
    [
        // number, name, type, unit, unit name, M, R, entity, thresholds, initial reading
        (1, "CPU_Temp",     0x01,  1, "degrees C",  1,  0, (3, 1),  upper(75.0, 85.0, 95.0),      Some(45.0)),
        (2, "Inlet_Temp",   0x01,  1, "degrees C",  1,  0, (55, 1), upper(40.0, 50.0, 60.0),      Some(24.0)),
        (3, "FAN1",         0x04, 18, "RPM",       50,  0, (29, 1), lower(200.0, 500.0, 1000.0),  Some(4800.0)),
        (4, "FAN2",         0x04, 18, "RPM",       50,  0, (29, 2), lower(200.0, 500.0, 1000.0),  Some(5000.0)),
        // PSU input power.
        (5, "PSU1_Power",   0x08,  6, "Watts",      4,  0, (10, 1), upper(800.0, 900.0, 1000.0),  Some(160.0)),
        (7, "P12V",         0x02,  4, "Volts",      6, -2, (7, 1),
            [Some(10.2), Some(10.8), Some(11.4), Some(12.6), Some(13.2), Some(13.8)],             Some(12.0)),
        (8, "PSU1_Current", 0x03,  5, "Amps",       1, -1, (10, 1), upper(8.0, 10.0, 12.0),       Some(1.5)),
        // The second PSU bay is empty: the sensor exists in the SDRs but has no reading.
        (9, "PSU2_Power",   0x08,  6, "Watts",      4,  0, (10, 2), upper(800.0, 900.0, 1000.0),  None),
    ]
    .into_iter()
    .map(|(number, name, sensor_type, unit, unit_name, m, r_exp, entity, thresholds, initial)| {
        Analog { number, name, sensor_type, unit, unit_name, m, r_exp, entity, thresholds, initial }
    })
    .collect()
}

/// The discrete power-supply status sensor (sensor-specific, type 0x08).
pub const PSU_STATUS: (u8, &str) = (6, "PSU1_Status");

/// FRU inventory the simulator serves.
pub const CHASSIS_PART: &str = "CS316S-3U";
pub const CHASSIS_SERIAL: &str = "TV-CHS-0001";
pub const BOARD_MFG: &str = "Tiervault Labs";
pub const BOARD_PRODUCT: &str = "TV-MB1";
pub const BOARD_SERIAL: &str = "TV-BRD-0002";
pub const BOARD_PART: &str = "TV-MB1-PN";
pub const PRODUCT_MFG: &str = "Tiervault";
pub const PRODUCT_NAME: &str = "Vault Appliance tier-5";
pub const PRODUCT_PART: &str = "TV-T5";
pub const PRODUCT_SERIAL: &str = "TV-PRD-0003";
pub const PSU_FRU: (u8, &str) = (1, "PSU1_FRU");
pub const PSU_SERIAL: &str = "TV-PSU-0004";
/// A FRU locator with no data behind it (the empty bay).
pub const EMPTY_FRU: (u8, &str) = (2, "PSU2_FRU");

/// Why the simulator cannot run here, if it cannot.
pub fn available() -> Result<(), String> {
    for tool in ["ipmi_sim", "ipmitool", "timeout"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Err(format!(
                "{tool} is not installed (apt-get install openipmi ipmitool)"
            ));
        }
    }
    Ok(())
}

/// A running simulator; killed (with the power-on process it started) on drop.
pub struct IpmiSim {
    dir: tempfile::TempDir,
    child: Child,
    pub lan_port: u16,
    pub console_port: u16,
    /// Where qemu's `ipmi-bmc-extern` connects (TCP on 127.0.0.1, qemu's VM protocol): pass it
    /// to `vm::Guest::ipmi_bmc` (run-guest.sh `--ipmi-bmc`).
    pub vm_port: u16,
    pub password_file: PathBuf,
}

impl IpmiSim {
    /// Starts a simulator on free loopback ports and waits until it answers over LAN. Tries
    /// new ports when another process took the chosen ones first.
    pub fn start() -> IpmiSim {
        let mut last = String::new();
        for _ in 0..3 {
            match Self::try_start() {
                Ok(sim) => return sim,
                Err(why) => last = why,
            }
        }
        panic!("ipmi_sim did not start: {last}");
    }

    fn try_start() -> Result<IpmiSim, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let lan_port = free_udp_port();
        let console_port = free_tcp_port();
        let state = dir.path().join("state");
        std::fs::create_dir(&state).map_err(|e| e.to_string())?;
        let password_file = dir.path().join("bmc.password");
        std::fs::write(&password_file, format!("{PASSWORD}\n")).map_err(|e| e.to_string())?;
        let vm_port = free_tcp_port();
        std::fs::write(
            dir.path().join("lan.conf"),
            lan_conf(lan_port, console_port, vm_port),
        )
        .map_err(|e| e.to_string())?;
        std::fs::write(dir.path().join("sim.emu"), emu()).map_err(|e| e.to_string())?;
        let log =
            std::fs::File::create(dir.path().join("ipmi_sim.log")).map_err(|e| e.to_string())?;
        // `timeout` bounds a simulator leaked by a test process killed outright; the process
        // group lets drop kill it together with the `startcmd` it spawned.
        let child = Command::new("timeout")
            .args([
                "-k", "5", "900", "ipmi_sim", "-c", "lan.conf", "-f", "sim.emu", "-s",
            ])
            .arg(&state)
            .arg("-n")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("spawning ipmi_sim: {e}"))?;
        let mut sim = IpmiSim {
            dir,
            child,
            lan_port,
            console_port,
            vm_port,
            password_file,
        };
        sim.wait_ready()?;
        Ok(sim)
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        // The console answers once the .emu file has been executed.
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("ipmi_sim exited ({status}): {}", self.log()));
            }
            if self.try_console("").is_ok() {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("console never answered: {}", self.log()));
            }
            thread::sleep(Duration::from_millis(50));
        }
        // The SEL clock starts at the simulator's uptime ("Pre-Init" entries); set it to the
        // host's time so later entries carry dates. This is also the first LAN session.
        loop {
            let out = self.ipmitool(&["sel", "time", "set", "now"]);
            if out.status.success() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "no LAN session: {} {}",
                    String::from_utf8_lossy(&out.stderr),
                    self.log()
                ));
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What ipmi_sim printed so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("ipmi_sim.log")).unwrap_or_default()
    }

    /// LAN settings for this simulator: the password file, cipher suite 3, one retry of one
    /// second (loopback answers in milliseconds).
    pub fn lan(&self) -> LanConfig {
        let mut lan = LanConfig::new("127.0.0.1", USER, self.password_file.clone());
        lan.port = self.lan_port;
        lan.session_timeout_secs = 1;
        lan.session_retries = 1;
        lan
    }

    pub fn config(&self) -> IpmiConfig {
        let mut config = IpmiConfig::new(Transport::Lan(self.lan()));
        config.timeout_secs = 30;
        config
    }

    /// Runs ipmitool directly against the simulator (for captures and set-up), in the same
    /// environment `IpmiTool` gives it.
    pub fn ipmitool(&self, words: &[&str]) -> Output {
        let port = self.lan_port.to_string();
        let pw = self.password_file.to_string_lossy().into_owned();
        Command::new("ipmitool")
            .args([
                "-I",
                "lanplus",
                "-H",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                USER,
                "-C",
                "3",
            ])
            .args(["-N", "1", "-R", "1", "-f", &pw])
            .args(words)
            .env("TZ", "UTC")
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .output()
            .expect("running ipmitool")
    }

    /// Runs one simulator command on its console; panics when the simulator refuses it.
    pub fn console(&self, command: &str) -> String {
        match self.try_console(command) {
            Ok(reply) => reply,
            Err(why) => panic!("ipmi_sim console `{command}`: {why}\n{}", self.log()),
        }
    }

    fn try_console(&self, command: &str) -> Result<String, String> {
        let mut stream =
            TcpStream::connect(("127.0.0.1", self.console_port)).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        read_prompt(&mut stream)?;
        if command.is_empty() {
            return Ok(String::new());
        }
        stream
            .write_all(format!("{command}\n").as_bytes())
            .map_err(|e| e.to_string())?;
        let reply = read_prompt(&mut stream)?;
        // The console echoes the command, then prints its answer; errors start with "**".
        let reply = reply.replace('\r', "");
        let answer = reply
            .split_once('\n')
            .map_or("", |(_, rest)| rest)
            .trim()
            .to_string();
        if answer.contains("**") {
            return Err(answer);
        }
        Ok(answer)
    }

    fn analog(&self, name: &str) -> Analog {
        analog_sensors()
            .into_iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no analog sensor {name}"))
    }

    /// Sets an analog sensor's reading, logging the threshold events it crosses.
    pub fn set_reading(&self, name: &str, value: f64) {
        let sensor = self.analog(name);
        let raw = sensor.raw(value);
        self.console(&format!(
            "sensor_set_value {BMC} 0 {} {raw} 1",
            sensor.number
        ));
    }

    /// Asserts or deasserts a state of the discrete PSU status sensor, logging the event.
    pub fn set_state(&self, name: &str, bit: u8, on: bool) {
        assert_eq!(name, PSU_STATUS.1, "only {} is discrete", PSU_STATUS.1);
        self.console(&format!(
            "sensor_set_bit {BMC} 0 {} {bit} {} 1",
            PSU_STATUS.0,
            u8::from(on)
        ));
    }

    /// Adds a raw SEL record (record type and its 13 bytes after the record ID; the
    /// simulator fills in the timestamp of timestamped records).
    pub fn add_sel(&self, record_type: u8, bytes: [u8; 13]) {
        let bytes: Vec<String> = bytes.iter().map(|b| format!("{b:#04x}")).collect();
        self.console(&format!(
            "sel_add {BMC} {record_type:#04x} {}",
            bytes.join(" ")
        ));
    }

    /// Stops the simulator now (dropping does the same).
    pub fn stop(self) {}
}

impl Drop for IpmiSim {
    fn drop(&mut self) {
        let group = rustix::process::Pid::from_child(&self.child);
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::Kill);
        let _ = self.child.wait();
    }
}

/// Reads until the console's `> ` prompt; returns what came before it.
fn read_prompt(stream: &mut TcpStream) -> Result<String, String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.ends_with(b"> ") {
        let n = stream
            .read(&mut buf)
            .map_err(|e| format!("console read: {e}"))?;
        if n == 0 {
            return Err("console closed".into());
        }
        got.extend_from_slice(&buf[..n]);
    }
    got.truncate(got.len() - 2);
    // Drop the telnet option negotiation (IAC sequences) the console opens with.
    let text: Vec<u8> = strip_telnet(&got);
    Ok(String::from_utf8_lossy(&text).into_owned())
}

fn strip_telnet(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == 0xff {
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free UDP port")
        .port()
}

fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free TCP port")
        .port()
}

fn lan_conf(lan_port: u16, console_port: u16, vm_port: u16) -> String {
    let auths = "none md2 md5 straight";
    format!(
        "name \"tiervault-sim\"\n\
         set_working_mc {BMC}\n\
         \x20 startlan 1\n\
         \x20   addr 127.0.0.1 {lan_port}\n\
         \x20   priv_limit admin\n\
         \x20   allowed_auths_callback {auths}\n\
         \x20   allowed_auths_user {auths}\n\
         \x20   allowed_auths_operator {auths}\n\
         \x20   allowed_auths_admin {auths}\n\
         \x20   guid a123456789abcdefa123456789abcdef\n\
         \x20 endlan\n\
         \x20 user 1 true \"\" \"test\" user 10 {auths}\n\
         \x20 user 2 true \"{USER}\" \"{PASSWORD}\" admin 10 {auths}\n\
         \x20 # Chassis power is on while this process lives. Power control goes through the\n\
         \x20 # system interface of a virtual machine; with none connected, power off kills it.\n\
         \x20 # A qemu guest connects here (ipmi-bmc-extern): its /dev/ipmi0 is this BMC.\n\
         \x20 serial 15 127.0.0.1 {vm_port} codec VM\n\
         \x20 startcmd \"sleep 900\"\n\
         \x20 startnow true\n\
         console 127.0.0.1 {console_port}\n"
    )
}

/// The simulator's command file: the BMC, its SEL, the sensors with their SDRs, thresholds
/// and event support, and the FRU inventory.
fn emu() -> String {
    let mut out = vec![
        format!("mc_setbmc {BMC}"),
        format!("mc_add {BMC} 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr"),
        format!("sel_enable {BMC} 1000 0x0a"),
        // Sensor 0 must be the watchdog.
        format!("sensor_add {BMC} 0 0 35 0x6f event-only"),
        format!(
            "sensor_set_event_support {BMC} 0 0 enable scanning per-state \
             000000000001111 000000000000000 000000000001111 000000000000000"
        ),
    ];
    for s in analog_sensors() {
        let n = s.number;
        out.push(format!(
            "sensor_add {BMC} 0 {n} {:#04x} 0x01",
            s.sensor_type
        ));
        // Raw thresholds in the simulator's order: unr ucr unc lnr lcr lnc.
        let order = [5, 4, 3, 0, 1, 2];
        let raw: Vec<u8> = order
            .iter()
            .map(|&i| s.thresholds[i].map_or(0, |v| s.raw(v)))
            .collect();
        let enabled: String = order
            .iter()
            .map(|&i| if s.thresholds[i].is_some() { '1' } else { '0' })
            .collect();
        let values: Vec<String> = raw.iter().map(u8::to_string).collect();
        out.push(format!(
            "sensor_set_threshold {BMC} 0 {n} settable {enabled} {}",
            values.join(" ")
        ));
        out.push(format!("sensor_set_hysteresis {BMC} 0 {n} settable 2 2"));
        let scanning = if s.initial.is_some() {
            "scanning"
        } else {
            "no-scanning"
        };
        let mask = "000111111111111";
        out.push(format!(
            "sensor_set_event_support {BMC} 0 {n} enable {scanning} per-state {mask} {mask} {mask} {mask}"
        ));
        if let Some(v) = s.initial {
            out.push(format!("sensor_set_value {BMC} 0 {n} {} 0", s.raw(v)));
        }
        out.push(format!("main_sdr_add {BMC} {}", hex(&full_sdr(&s, &raw))));
    }
    let (n, name) = PSU_STATUS;
    out.push(format!("sensor_add {BMC} 0 {n} 0x08 0x6f"));
    out.push(format!(
        "sensor_set_event_support {BMC} 0 {n} enable scanning per-state \
         000000000000011 000000000000011 000000000000011 000000000000011"
    ));
    out.push(format!(
        "sensor_set_bit_clr_rest {BMC} 0 {n} {PSU_PRESENCE} 1 0"
    ));
    out.push(format!(
        "main_sdr_add {BMC} {}",
        hex(&compact_discrete_sdr(n, name, 0x08))
    ));

    let main = fru_image(&[
        Some(chassis_area(CHASSIS_PART, CHASSIS_SERIAL)),
        Some(board_area(
            BOARD_MFG,
            BOARD_PRODUCT,
            BOARD_SERIAL,
            BOARD_PART,
        )),
        Some(product_area(
            PRODUCT_MFG,
            PRODUCT_NAME,
            PRODUCT_PART,
            "1.0",
            PRODUCT_SERIAL,
        )),
    ]);
    out.push(format!(
        "mc_add_fru_data {BMC} 0 {} data {}",
        main.len(),
        hex(&main)
    ));
    let psu = fru_image(&[
        None,
        Some(board_area(
            "PSU Maker",
            "PSU-800W",
            PSU_SERIAL,
            "PSU-800-PN",
        )),
        None,
    ]);
    out.push(format!(
        "mc_add_fru_data {BMC} {} {} data {}",
        PSU_FRU.0,
        psu.len(),
        hex(&psu)
    ));
    for (id, name) in [PSU_FRU, EMPTY_FRU] {
        out.push(format!(
            "main_sdr_add {BMC} {}",
            hex(&fru_locator_sdr(id, name))
        ));
    }
    out.push(format!("mc_enable {BMC}"));
    out.join("\n") + "\n"
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:#04x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// An SDR ID string (8-bit ASCII, at most 16 bytes).
fn id_string(name: &str) -> Vec<u8> {
    let id = &name.as_bytes()[..name.len().min(16)];
    let mut out = vec![0xc0 | id.len() as u8];
    out.extend_from_slice(id);
    out
}

fn sdr(record_type: u8, body: Vec<u8>) -> Vec<u8> {
    let mut out = vec![0, 0, 0x51, record_type, body.len() as u8];
    out.extend(body);
    out
}

/// A Full Sensor Record (type 0x01), threshold-based, linear. `raw` holds the thresholds as
/// unr ucr unc lnr lcr lnc.
fn full_sdr(s: &Analog, raw: &[u8]) -> Vec<u8> {
    let mut body = vec![
        0x20,
        0,
        s.number, // owner, LUN, number
        s.entity.0,
        s.entity.1,
        0x7f,
        0x68, // initialisation; capabilities: auto re-arm, thresholds readable/settable
        s.sensor_type,
        0x01, // threshold event/reading type
        0x95,
        0x7a,
        0x95,
        0x7a, // assertion/deassertion masks, threshold reading masks
        0x3f,
        0x3f, // settable / readable thresholds
        0x00,
        s.unit,
        0x00, // unsigned; base unit; no modifier
        0x00, // linear
        (s.m & 0xff) as u8,
        ((s.m >> 8) << 6) as u8, // M, tolerance
        0,
        0,
        0,                             // B, accuracy
        ((s.r_exp as u8) & 0x0f) << 4, // R exponent, B exponent 0
        0x00,
        0,
        0,
        0,
        0xff,
        0x00, // analog flags, nominal, normal max/min, sensor max/min
    ];
    body.extend_from_slice(raw);
    body.extend_from_slice(&[2, 2, 0, 0, 0]); // hysteresis +/-, reserved, OEM
    body.extend(id_string(s.name));
    sdr(0x01, body)
}

/// A Compact Sensor Record (type 0x02), sensor-specific discrete, entity power supply 1.
fn compact_discrete_sdr(number: u8, name: &str, sensor_type: u8) -> Vec<u8> {
    let mut body = vec![
        0x20,
        0,
        number,
        0x0a,
        1,
        0x67,
        0x40,
        sensor_type,
        0x6f,
        0x03,
        0x00,
        0x03,
        0x00,
        0x03,
        0x00, // assertion/deassertion/reading masks: states 0, 1
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
    ];
    body.extend(id_string(name));
    sdr(0x02, body)
}

/// A FRU Device Locator Record (type 0x11) for a logical FRU device on the BMC.
fn fru_locator_sdr(id: u8, name: &str) -> Vec<u8> {
    let mut body = vec![0x20, id, 0x80, 0, 0, 0x10, 0, 0x0a, id, 0];
    body.extend(id_string(name));
    sdr(0x11, body)
}

/// An FRU information area: version 1, length in 8-byte units, fields, end marker, zero
/// padding and a zero-sum checksum (IPMI Platform Management FRU Information Storage).
fn fru_area(mut body: Vec<u8>) -> Vec<u8> {
    body.push(0xc1);
    while !(body.len() + 1).is_multiple_of(8) {
        body.push(0);
    }
    body[1] = ((body.len() + 1) / 8) as u8;
    let sum = body.iter().fold(0u8, |a, b| a.wrapping_add(*b));
    body.push(sum.wrapping_neg());
    body
}

/// An 8-bit ASCII FRU field (type/length byte 0xC0 | length, at most 63 bytes).
fn fru_text(s: &str) -> Vec<u8> {
    let text = &s.as_bytes()[..s.len().min(63)];
    let mut out = vec![0xc0 | text.len() as u8];
    out.extend_from_slice(text);
    out
}

fn chassis_area(part: &str, serial: &str) -> Vec<u8> {
    let mut body = vec![1, 0, 0x17]; // rack mount chassis
    body.extend(fru_text(part));
    body.extend(fru_text(serial));
    fru_area(body)
}

fn board_area(mfg: &str, product: &str, serial: &str, part: &str) -> Vec<u8> {
    // Manufacturing date: minutes since 1996-01-01 (15,000,000 is July 2024).
    let minutes: u32 = 15_000_000;
    let mut body = vec![1, 0, 0];
    body.extend_from_slice(&minutes.to_le_bytes()[..3]);
    for field in [mfg, product, serial, part, ""] {
        body.extend(fru_text(field));
    }
    fru_area(body)
}

fn product_area(mfg: &str, name: &str, part: &str, version: &str, serial: &str) -> Vec<u8> {
    let mut body = vec![1, 0, 0];
    for field in [mfg, name, part, version, serial, "", ""] {
        body.extend(fru_text(field));
    }
    fru_area(body)
}

/// A FRU image: the common header (offsets in 8-byte units, zero-sum checksum) and the
/// chassis, board and product areas present.
fn fru_image(areas: &[Option<Vec<u8>>; 3]) -> Vec<u8> {
    let mut offsets = [0u8; 3];
    let mut data = Vec::new();
    let mut next = 1usize;
    for (slot, area) in offsets.iter_mut().zip(areas) {
        if let Some(area) = area {
            *slot = next as u8;
            next += area.len() / 8;
            data.extend_from_slice(area);
        }
    }
    let mut header = vec![1, 0, offsets[0], offsets[1], offsets[2], 0, 0];
    let sum = header.iter().fold(0u8, |a, b| a.wrapping_add(*b));
    header.push(sum.wrapping_neg());
    header.extend(data);
    header
}
