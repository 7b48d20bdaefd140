//! The service's SMART round through a fake [`SmartSource`] fed with reports captured from
//! qemu's disks (tiervault-health's testdata): alerts raised and cleared per disk, also across
//! a restart; self-tests started one disk per array; a disk smartctl cannot read is a
//! health-source error, never a crash; a disk without SMART is not a fault.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tiervault_alerts::AlertStore;
use tiervault_bus::{AlertBoard, Audit};
use tiervault_health::selftest::TestKind;
use tiervault_health::smart::{parse, SmartError, SmartReport};

use super::*;
use crate::smartctl::Disk;

fn capture(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../libs/health/testdata/smart")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// What each disk answers, and the self-tests started.
#[derive(Default)]
struct Disks {
    answers: BTreeMap<String, Result<SmartReport, SmartError>>,
    arrays: BTreeMap<String, String>,
    started: Vec<(String, TestKind)>,
}

#[derive(Clone, Default)]
struct Fake(Arc<Mutex<Disks>>);

impl Fake {
    fn set(&self, name: &str, array: Option<&str>, answer: Result<SmartReport, SmartError>) {
        let mut d = self.0.lock().expect("lock");
        d.answers.insert(name.into(), answer);
        if let Some(a) = array {
            d.arrays.insert(name.into(), a.into());
        }
    }

    fn started(&self) -> Vec<(String, TestKind)> {
        self.0.lock().expect("lock").started.clone()
    }
}

impl SmartSource for Fake {
    fn disks(&self) -> Vec<Disk> {
        let d = self.0.lock().expect("lock");
        d.answers
            .keys()
            .map(|name| Disk {
                name: name.clone(),
                device: PathBuf::from(format!("/dev/{name}")),
                array: d.arrays.get(name).cloned(),
            })
            .collect()
    }

    fn report(&self, disk: &Disk) -> Result<SmartReport, SmartError> {
        let d = self.0.lock().expect("lock");
        match d.answers.get(&disk.name) {
            Some(Ok(r)) => Ok(r.clone()),
            Some(Err(e)) => Err(match e {
                SmartError::NotJson { device, why } => SmartError::NotJson {
                    device: device.clone(),
                    why: why.clone(),
                },
                SmartError::OpenFailed { device, messages } => SmartError::OpenFailed {
                    device: device.clone(),
                    messages: messages.clone(),
                },
                SmartError::Unsupported { device, messages } => SmartError::Unsupported {
                    device: device.clone(),
                    messages: messages.clone(),
                },
            }),
            None => Err(SmartError::OpenFailed {
                device: disk.name.clone(),
                messages: "gone".into(),
            }),
        }
    }

    fn start_test(&self, disk: &Disk, kind: TestKind) -> Result<(), String> {
        let serial = self
            .report(disk)
            .map(|r| r.serial)
            .map_err(|e| e.to_string())?;
        self.0.lock().expect("lock").started.push((serial, kind));
        Ok(())
    }
}

fn report(capture_name: &str, device: &str, serial: &str) -> SmartReport {
    let mut r = parse(device, &capture(capture_name)).expect("capture parses");
    r.serial = serial.into();
    r
}

fn service(state: &Path, fake: &Fake) -> Service {
    let cfg_file = state.join("healthd.toml");
    std::fs::write(
        &cfg_file,
        format!("state-dir = \"{}\"\n", state.join("state").display()),
    )
    .expect("config");
    let cfg = HealthConfig::load(&cfg_file).expect("config");
    std::fs::create_dir_all(&cfg.state_dir).expect("state dir");
    let (store, _) =
        AlertStore::open(&cfg.state_dir.join("alerts.json"), "healthd", 50).expect("alerts");
    let audit = Arc::new(Audit::open(&cfg.state_dir.join("audit.log")).expect("audit"));
    let alerts = AlertBoard::new(store, audit, crate::dbus::ROOT);
    Service::new(cfg, alerts, None, None, Some(Box::new(fake.clone())))
}

fn active(svc: &Service) -> Vec<(String, String, u8)> {
    let mut v: Vec<(String, String, u8)> = svc
        .alerts
        .snapshot()
        .into_iter()
        .filter(Alert::is_active)
        .map(|a| (a.class, a.key, a.severity.get()))
        .collect();
    v.sort();
    v
}

#[test]
fn smart_faults_become_alerts_that_clear_also_across_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fake = Fake::default();
    let nvme = report("qemu-nvme.json", "/dev/nvme0n1", "NV1");
    let ata = report("qemu-ata.json", "/dev/sda", "ATA1");
    fake.set("nvme0n1", Some("vault-data0"), Ok(nvme.clone()));
    fake.set("sda", Some("vault-data0"), Ok(ata.clone()));
    fake.set(
        "vda",
        None,
        parse("/dev/vda", &capture("virtio-no-smart.json")).map(|_| unreachable!()),
    );
    let mut svc = service(dir.path(), &fake);
    svc.poll_smart();
    assert_eq!(active(&svc), [], "healthy disks, a disk without SMART");
    assert_eq!(svc.latest.disks.len(), 2);

    // The NVMe disk fails its overall assessment; the ATA disk grows pending sectors;
    // then smartctl's output for it is garbage.
    let mut failing = nvme.clone();
    failing.passed = Some(false);
    fake.set("nvme0n1", None, Ok(failing));
    let mut sectors = ata.clone();
    sectors.pending_sectors = Some(12);
    fake.set("sda", None, Ok(sectors));
    svc.poll_smart();
    let a = active(&svc);
    assert!(
        a.contains(&("smart.failing".into(), "NV1".into(), 9)),
        "{a:?}"
    );
    assert!(
        a.iter()
            .any(|(c, k, s)| c == "smart.sectors" && k == "ATA1" && *s == 7),
        "{a:?}"
    );
    fake.set(
        "sda",
        None,
        parse("/dev/sda", "{\"json_format_version\": [1, 0], trunc"),
    );
    svc.poll_smart();
    let a = active(&svc);
    assert!(
        a.iter()
            .any(|(c, k, s)| c == CLASS_SOURCE && k == "/dev/sda" && *s == 6),
        "garbage is a source error: {a:?}"
    );
    assert!(svc.latest.errors.contains_key("smart /dev/sda"));

    // The disks are replaced while the service is down: a new service clears what it no
    // longer finds.
    drop(svc);
    fake.set("nvme0n1", None, Ok(nvme));
    fake.set("sda", None, Ok(ata));
    let mut svc = service(dir.path(), &fake);
    assert!(!active(&svc).is_empty(), "alerts kept across the restart");
    svc.poll_smart();
    assert_eq!(active(&svc), [], "cleared after the restart");
    assert!(svc.latest.errors.is_empty(), "{:?}", svc.latest.errors);
}

#[test]
fn self_tests_start_one_disk_per_array_at_a_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fake = Fake::default();
    for (name, serial, array) in [
        ("sda", "A1", "vault-data0"),
        ("sdb", "A2", "vault-data0"),
        ("sdc", "B1", "vault-data1"),
    ] {
        fake.set(
            name,
            Some(array),
            Ok(report("qemu-ata.json", &format!("/dev/{name}"), serial)),
        );
    }
    let mut svc = service(dir.path(), &fake);
    svc.poll_smart();
    let started = fake.started();
    let serials: Vec<&str> = started.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(started.len(), 2, "one per array: {started:?}");
    assert!(serials.contains(&"B1"), "{started:?}");
    assert!(
        serials.contains(&"A1") != serials.contains(&"A2"),
        "never two disks of vault-data0: {started:?}"
    );
    // Recorded durably: a restart does not start them again.
    drop(svc);
    let mut svc = service(dir.path(), &fake);
    let before = fake.started().len();
    svc.poll_smart();
    let again: Vec<_> = fake.started()[before..].to_vec();
    assert!(
        again.iter().all(|(s, _)| !serials.contains(&s.as_str())),
        "restarted tests on the same disks: {again:?}"
    );
}
