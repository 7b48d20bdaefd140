//! `vaultctl support-bundle` as a black box, against a fake appliance tree (`--root`) and fake
//! diagnostic commands (a `$PATH` holding only shell scripts): what the bundle holds, what its
//! manifest says about everything it does not, and that no planted secret — in any form —
//! reaches any byte of it.
//!
//! The archive is read with a small tar parser written here (headers checked, GNU long names
//! followed) over the zstd crate: an independent reading of what the command wrote.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::cli::bare_command;
use common::{check_exit, error_line, json_of, vaultctl};
use serde_json::Value;
use tempfile::TempDir;

const PASSPHRASE: &str = "correct-horse-battery-staple-7781";
const PSA_TOKEN: &str = "psa-tok-0123456789abcdef";
const SMTP_PASSWORD: &str = "smtp-Pw-5b7e1c";
const BMC_PASSWORD: &str = "bmc-Str0ng-pass";
const INLINE_PASSWORD: &str = "Pl4inText-Passw0rd-2291";
const API_TOKEN: &str = "tok_live_9f8e7d6c5b4a";
const HEADER_VALUE: &str = "inline-header-Secret-91";
const URL_PASSWORD: &str = "HookPw-7Q2x";
const URL_PATH_SECRET: &str = "XyZsecretpathQ8";
const BEARER: &str = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0.sig-7Hq";
const OLD_PASSWORD: &str = "commented-out-Pw-0451";
const MULTILINE_1: &str = "multi-line-secret-one";
const MULTILINE_2: &str = "multi-line-secret-two";
const PEM_BODY: &str = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj";
const STRAY_PEM_BODY: &str = "MHcCAQEEIBrandomstraykeymaterialAAAAAAAAAAAAAAAAoAoGCCqGSM49";

/// The raw vault key: 32 bytes, not UTF-8, named by no config.
fn vault_key() -> Vec<u8> {
    (0u8..32)
        .map(|i| i.wrapping_mul(73).wrapping_add(0x91))
        .collect()
}

fn pem(kind: &str, body: &str) -> String {
    format!("-----BEGIN {kind}-----\n{body}\nAAAA\n-----END {kind}-----\n")
}

fn write(path: &Path, content: impl AsRef<[u8]>) {
    fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    fs::write(path, content).expect("write");
}

fn script(dir: &Path, name: &str, body: &str) {
    let p = dir.join(name);
    write(&p, format!("#!/bin/sh\n{body}\n"));
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).expect("chmod");
}

const HEALTHD_TOML: &str = r#"# /etc/tiervault/healthd.toml
state-dir = "/var/lib/tiervault/healthd"
# password = "commented-out-Pw-0451"
api-token = "tok_live_9f8e7d6c5b4a"

[bmc.transport]
kind = "lan"
host = "10.0.0.5"
user = "admin"
password_file = "/etc/tiervault/bmc.password"

[smtp]
host = "smtp.msp.example"
password = "Pl4inText-Passw0rd-2291"
passphrase = """
multi-line-secret-one
multi-line-secret-two
"""
port = 587
"#;

/// A fake appliance: configs full of secrets, secret files, state, sysfs and procfs.
struct Appliance {
    tmp: TempDir,
}

impl Appliance {
    fn root(&self) -> PathBuf {
        self.tmp.path().join("root")
    }

    fn bin(&self) -> PathBuf {
        self.tmp.path().join("bin")
    }

    fn out(&self, name: &str) -> PathBuf {
        let d = self.tmp.path().join("out");
        fs::create_dir_all(&d).expect("mkdir out");
        d.join(name)
    }

    fn empty() -> Appliance {
        let a = Appliance {
            tmp: tempfile::tempdir().expect("tempdir"),
        };
        fs::create_dir_all(a.root()).expect("root");
        fs::create_dir_all(a.bin()).expect("bin");
        a
    }

    fn new() -> Appliance {
        let a = Appliance::empty();
        let r = a.root();
        let etc = r.join("etc/tiervault");
        write(
            &etc.join("appliance.toml"),
            "tier = \"tier-20\"\nindex-memory-bytes = 4294967296\n",
        );
        write(
            &etc.join("ingestd.toml"),
            "vault = \"/srv/tiervault/vault\"\n\
             passphrase-file = \"/etc/tiervault/secrets/vault-passphrase\"\n\
             state-dir = \"/var/lib/tiervault/ingestd\"\n\
             backup-roots = [\"/mnt\"]\n",
        );
        write(
            &etc.join("replicad.toml"),
            "version = 1\nvault = \"/srv/tiervault/vault\"\n\
             to = \"tiervault://vault.msp.example:7443\"\n\
             ca = \"/etc/tiervault/remote-ca.pem\"\n\
             cert = \"/etc/tiervault/appliance.pem\"\n\
             key = \"/etc/tiervault/appliance.key\"\n",
        );
        write(
            &etc.join("poold.toml"),
            format!(
                "state-dir = \"/var/lib/tiervault/poold\"\n\n[notify]\nspool-dir = \"/var/lib/tiervault/poold/notify\"\n\n\
                 [[notify.webhook]]\nname = \"psa\"\n\
                 url = \"https://hookuser:{URL_PASSWORD}@psa.msp.example/hooks/T0001/{URL_PATH_SECRET}\"\n\
                 token-file = \"/etc/tiervault/secrets/psa-token\"\n\
                 header = {{ name = \"X-Api-Key\", value = \"{HEADER_VALUE}\" }}\n\n\
                 [[notify.smtp]]\nname = \"noc-mail\"\nuser = \"vault-7\"\n\
                 password-file = \"/etc/tiervault/secrets/smtp-password\"\n"
            ),
        );
        write(&etc.join("healthd.toml"), HEALTHD_TOML);
        write(
            &etc.join("secrets/vault-passphrase"),
            format!("{PASSPHRASE}\n"),
        );
        write(&etc.join("secrets/psa-token"), format!("{PSA_TOKEN}\n"));
        write(
            &etc.join("secrets/smtp-password"),
            format!("{SMTP_PASSWORD}\n"),
        );
        write(&etc.join("bmc.password"), format!("{BMC_PASSWORD}\n"));
        write(&etc.join("vault.key"), vault_key());
        write(&etc.join("appliance.key"), pem("PRIVATE KEY", PEM_BODY));
        // Named by nothing and named like nothing: found by content.
        write(
            &etc.join("extra/stray.pem"),
            pem("EC PRIVATE KEY", STRAY_PEM_BODY),
        );
        write(&etc.join("extra/blob"), {
            let mut k = vault_key();
            k.reverse();
            k
        });
        write(
            &etc.join("appliance.pem"),
            "-----BEGIN CERTIFICATE-----\nMIIBcertificate\n-----END CERTIFICATE-----\n",
        );
        write(
            &r.join("etc/mdadm/mdadm.conf"),
            "ARRAY /dev/md/vault-ddb metadata=1.2 UUID=a:b:c:d\n",
        );
        write(
            &r.join("etc/os-release"),
            "PRETTY_NAME=\"Tiervault Test OS\"\nID=tvtest\n",
        );

        let state = r.join("var/lib/tiervault");
        write(
            &state.join("poold/status.json"),
            "{\"state\": \"degraded\"}\n",
        );
        // The service leaks the passphrase into an alert: a place no rule knows about.
        write(
            &state.join("poold/alerts.json"),
            format!("{{\"alerts\": [{{\"class\": \"bmc\", \"summary\": \"unlock failed with {PASSPHRASE} (wrong?)\"}}]}}\n"),
        );
        // poold/audit.log is left out on purpose: the manifest must say it is missing.
        write(&state.join("ingestd/history.json"), "{\"jobs\": []}\n");
        write(&state.join("ingestd/alerts.json"), "{\"alerts\": []}\n");
        write(
            &state.join("ingestd/audit.log"),
            format!(
                "{{\"who\": \"support\", \"call\": \"Verify\"}}\n{{\"debug\": \"key {}\"}}\n",
                hex::encode(vault_key())
            ),
        );
        write(
            &state.join("healthd/state.json"),
            format!(
                "{{\"sel\": \"ok\", \"dump\": \"{}\"}}\n",
                pem("RSA PRIVATE KEY", "MIIdumped").replace('\n', "\\n")
            ),
        );
        write(
            &state.join("healthd/status.json"),
            "{\"sensors\": [{\"name\": \"FAN1\", \"value\": 300.0, \"level\": \"critical\"}]}\n",
        );
        write(&state.join("healthd/alerts.json"), "{\"alerts\": []}\n");
        write(
            &state.join("healthd/sel-archive.jsonl"),
            "{\"entry\": {\"id\": 1, \"sensor\": \"FAN1\"}}\n",
        );
        write(
            &r.join("srv/tiervault/vault/replication/alerts.json"),
            "{\"alerts\": []}\n",
        );
        write(
            &r.join("srv/tiervault/vault/replication/status.json"),
            "{\"last_success\": null}\n",
        );

        write(
            &r.join("proc/mdstat"),
            "Personalities : [raid10]\nunused devices: <none>\n",
        );
        write(&r.join("proc/meminfo"), "MemTotal:       16384000 kB\n");
        write(
            &r.join("proc/cpuinfo"),
            "processor\t: 0\nmodel name\t: Fake CPU\nphysical id\t: 0\ncore id\t: 0\n\n",
        );
        let sda = r.join("sys/block/sda");
        write(&sda.join("size"), "3907029168\n");
        write(&sda.join("queue/rotational"), "1\n");
        write(&sda.join("device/model"), "FAKE DISK\n");
        write(&sda.join("device/serial"), "SER123\n");

        let bin = a.bin();
        let b64 = base64(&vault_key(), false);
        script(
            &bin,
            "journalctl",
            &format!(
                "printf 'journalctl args: %s\\n' \"$*\"\n\
                 printf '2025-01-01T00:00:00+0000 vm vault-replicad[7]: loaded key material %s\\n' '{b64}'\n\
                 printf '2025-01-01T00:00:01+0000 vm vault-poold[8]: POST with Authorization: Bearer {BEARER}\\n'\n\
                 printf '2025-01-01T00:00:02+0000 vm vault-poold[8]: psa answered 401 for {PSA_TOKEN}\\n'\n\
                 printf '2025-01-01T00:00:03+0000 vm vault-poold[8]: array vault-ddb degraded\\n'"
            ),
        );
        script(&bin, "mdadm", "echo 'mdadm - v4.2 - fake' >&2");
        script(&bin, "ipmitool", "echo 'ipmitool version 1.8.19'");
        script(
            &bin,
            "smartctl",
            "if [ \"$1\" = --version ]; then echo 'smartctl: database missing' >&2; exit 2; fi\n\
             printf '{\"device\": {\"name\": \"%s\"}, \"smart_status\": {\"passed\": true}}\\n' \"$3\"\nexit 4",
        );
        a
    }

    /// `vaultctl support-bundle --root ROOT ARGS` with only the fake commands in $PATH.
    fn run(&self, args: &[&str]) -> Output {
        bare_command(vaultctl())
            .arg("support-bundle")
            .arg("--root")
            .arg(self.root())
            .args(args)
            .env("PATH", self.bin())
            .current_dir(self.tmp.path().join("out"))
            .output()
            .expect("run vaultctl")
    }
}

/// Every planted secret and the forms it may take.
fn planted() -> Vec<Vec<u8>> {
    let key = vault_key();
    let mut all: Vec<Vec<u8>> = [
        PASSPHRASE,
        PSA_TOKEN,
        SMTP_PASSWORD,
        BMC_PASSWORD,
        INLINE_PASSWORD,
        API_TOKEN,
        HEADER_VALUE,
        URL_PASSWORD,
        URL_PATH_SECRET,
        BEARER,
        OLD_PASSWORD,
        MULTILINE_1,
        MULTILINE_2,
        PEM_BODY,
        STRAY_PEM_BODY,
        "MIIdumped",
        "PRIVATE KEY",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    all.push(key.clone());
    all.push(hex::encode(&key).into_bytes());
    all.push(hex::encode_upper(&key).into_bytes());
    for url_safe in [false, true] {
        all.push(
            base64(&key, url_safe)
                .trim_end_matches('=')
                .as_bytes()
                .to_vec(),
        );
    }
    all
}

/// RFC 4648 base64 (the test crate has no base64 dependency).
fn base64(data: &[u8], url_safe: bool) -> String {
    let mut alphabet: Vec<u8> =
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".to_vec();
    if url_safe {
        alphabet[62] = b'-';
        alphabet[63] = b'_';
    }
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(alphabet[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8(b[..end].to_vec()).expect("member name is UTF-8")
}

fn octal(b: &[u8]) -> usize {
    let s = cstr(b);
    usize::from_str_radix(s.trim(), 8).unwrap_or_else(|e| panic!("bad octal {s:?}: {e}"))
}

/// The members of a tar stream, checking each header's checksum.
fn untar(raw: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut pos = 0;
    let mut long_name: Option<String> = None;
    while pos + 512 <= raw.len() {
        let h = &raw[pos..pos + 512];
        if h.iter().all(|&b| b == 0) {
            break;
        }
        let sum: usize = h
            .iter()
            .enumerate()
            .map(|(i, &b)| {
                if (148..156).contains(&i) {
                    32
                } else {
                    b as usize
                }
            })
            .sum();
        assert_eq!(sum, octal(&h[148..156]), "header checksum at {pos}");
        assert_eq!(&h[257..262], b"ustar", "magic at {pos}");
        let size = octal(&h[124..136]);
        let data = raw[pos + 512..pos + 512 + size].to_vec();
        pos += 512 + size.div_ceil(512) * 512;
        match h[156] {
            b'L' => long_name = Some(cstr(&data)),
            b'0' | 0 => {
                let name = long_name.take().unwrap_or_else(|| cstr(&h[..100]));
                out.push((name, data));
            }
            t => panic!("unexpected tar entry type {t}"),
        }
    }
    out
}

/// The decompressed tar and its members, with the top directory checked and removed.
fn unpack(path: &Path, top: &str) -> (Vec<u8>, Vec<(String, Vec<u8>)>) {
    let raw = zstd::decode_all(fs::File::open(path).expect("open bundle")).expect("zstd");
    let members = untar(&raw)
        .into_iter()
        .map(|(name, data)| {
            let rel = name
                .strip_prefix(&format!("{top}/"))
                .unwrap_or_else(|| panic!("{name} is not under {top}/"))
                .to_owned();
            (rel, data)
        })
        .collect();
    (raw, members)
}

fn member<'a>(members: &'a [(String, Vec<u8>)], name: &str) -> &'a [u8] {
    members
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, d)| d.as_slice())
        .unwrap_or_else(|| {
            let names: Vec<&str> = members.iter().map(|(n, _)| n.as_str()).collect();
            panic!("{name} missing from the bundle: {names:?}")
        })
}

fn text(members: &[(String, Vec<u8>)], name: &str) -> String {
    String::from_utf8(member(members, name).to_vec()).expect("UTF-8 member")
}

fn item<'a>(manifest: &'a Value, source: &str) -> &'a Value {
    manifest["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| i["source"] == source)
        .unwrap_or_else(|| panic!("no manifest item for {source}: {manifest:#}"))
}

fn item_starting<'a>(manifest: &'a Value, prefix: &str) -> &'a Value {
    manifest["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| i["source"].as_str().is_some_and(|s| s.starts_with(prefix)))
        .unwrap_or_else(|| panic!("no manifest item starting {prefix}: {manifest:#}"))
}

fn leftovers(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .expect("ls")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn bundle_holds_everything_and_no_secret() {
    let a = Appliance::new();
    let out = a.out("ticket-4711.tar.zst");
    let run = a.run(&["--output", out.to_str().expect("utf8"), "--since", "2d"]);
    check_exit(&run, 0, "support-bundle");
    let stderr = String::from_utf8_lossy(&run.stderr);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        stdout.contains("wrote ") && stdout.contains("ticket-4711.tar.zst"),
        "{stdout}"
    );
    assert_eq!(
        fs::metadata(&out).expect("bundle").permissions().mode() & 0o777,
        0o600,
        "the bundle is readable by its owner only"
    );
    assert_eq!(
        leftovers(out.parent().expect("dir")),
        ["ticket-4711.tar.zst"]
    );

    let (raw, members) = unpack(&out, "ticket-4711");
    // No planted secret, in any form, in any member, in any name, or anywhere in the tar.
    for s in planted() {
        let shown = String::from_utf8_lossy(&s);
        assert!(!contains(&raw, &s), "{shown} is in the tar stream");
        for (name, data) in &members {
            assert!(!contains(data, &s), "{shown} is in {name}");
            assert!(
                !contains(name.as_bytes(), &s),
                "{shown} is in the name {name}"
            );
        }
    }

    for expected in [
        "MANIFEST.json",
        "versions/vaultctl.txt",
        "versions/uname.txt",
        "versions/os-release",
        "versions/mdadm.txt",
        "versions/ipmitool.txt",
        "config/etc/tiervault/appliance.toml",
        "config/etc/tiervault/ingestd.toml",
        "config/etc/tiervault/replicad.toml",
        "config/etc/tiervault/poold.toml",
        "config/etc/tiervault/healthd.toml",
        "config/etc/tiervault/appliance.pem",
        "config/etc/mdadm/mdadm.conf",
        "state/var/lib/tiervault/poold/status.json",
        "state/var/lib/tiervault/poold/alerts.json",
        "state/var/lib/tiervault/ingestd/history.json",
        "state/var/lib/tiervault/ingestd/alerts.json",
        "state/var/lib/tiervault/ingestd/audit.log",
        "state/var/lib/tiervault/healthd/state.json",
        "state/var/lib/tiervault/healthd/status.json",
        "state/var/lib/tiervault/healthd/alerts.json",
        "state/var/lib/tiervault/healthd/sel-archive.jsonl",
        "state/srv/tiervault/vault/replication/status.json",
        "state/srv/tiervault/vault/replication/alerts.json",
        "logs/journal.txt",
        "hardware/hw.json",
        "hardware/proc/mdstat",
        "hardware/smart/sda.json",
    ] {
        member(&members, expected);
    }
    let names: Vec<&str> = members.iter().map(|(n, _)| n.as_str()).collect();
    for secret_file in [
        "secrets",
        "vault.key",
        "appliance.key",
        "bmc.password",
        "stray.pem",
        "extra/blob",
    ] {
        assert!(
            !names.iter().any(|n| n.contains(secret_file)),
            "{secret_file} is in the bundle: {names:?}"
        );
    }
    assert!(text(&members, "versions/vaultctl.txt").starts_with("vaultctl "));
    assert_eq!(
        text(&members, "versions/mdadm.txt"),
        "mdadm - v4.2 - fake\n",
        "mdadm's stderr"
    );
    assert!(text(&members, "hardware/hw.json").contains("SER123"));

    // The configs keep every line; only values are redacted.
    let healthd = text(&members, "config/etc/tiervault/healthd.toml");
    assert_eq!(
        healthd.lines().count(),
        HEALTHD_TOML.lines().count(),
        "{healthd}"
    );
    for line in [
        "state-dir = \"/var/lib/tiervault/healthd\"",
        "# password = \"<redacted>\"",
        "api-token = \"<redacted>\"",
        "password_file = \"/etc/tiervault/bmc.password\"",
        "password = \"<redacted>\"",
        "host = \"smtp.msp.example\"",
        "port = 587",
    ] {
        assert!(
            healthd.lines().any(|l| l == line),
            "{line:?} not in:\n{healthd}"
        );
    }
    let poold = text(&members, "config/etc/tiervault/poold.toml");
    for line in [
        "url = \"https://<redacted>@psa.msp.example/<redacted>\"",
        "token-file = \"/etc/tiervault/secrets/psa-token\"",
        "header = { name = \"X-Api-Key\", value = \"<redacted>\" }",
        "password-file = \"/etc/tiervault/secrets/smtp-password\"",
        "user = \"vault-7\"",
    ] {
        assert!(
            poold.lines().any(|l| l == line),
            "{line:?} not in:\n{poold}"
        );
    }
    assert!(text(&members, "config/etc/tiervault/replicad.toml")
        .contains("key = \"/etc/tiervault/appliance.key\""));

    // The leak in alerts.json is redacted there, and reported.
    let alerts = text(&members, "state/var/lib/tiervault/poold/alerts.json");
    assert!(
        alerts.contains("unlock failed with <redacted> (wrong?)"),
        "{alerts}"
    );
    let journal = text(&members, "logs/journal.txt");
    assert!(
        journal.contains("Authorization: Bearer <redacted>"),
        "{journal}"
    );
    assert!(journal.contains("array vault-ddb degraded"), "{journal}");

    let manifest: Value =
        serde_json::from_slice(member(&members, "MANIFEST.json")).expect("manifest JSON");
    assert_eq!(manifest["format"], "tiervault-support-bundle/1");
    assert_eq!(manifest["name"], "ticket-4711");
    let found = manifest["known_values_found"]
        .as_array()
        .expect("known_values_found");
    assert!(
        found
            .iter()
            .any(|f| f["path"] == "state/var/lib/tiervault/poold/alerts.json"
                && f["value_from"] == "/etc/tiervault/secrets/vault-passphrase"),
        "{found:?}"
    );
    assert!(found
        .iter()
        .any(|f| f["path"] == "state/var/lib/tiervault/ingestd/audit.log"
            && f["value_from"] == "/etc/tiervault/vault.key"));
    assert!(found.iter().any(|f| f["path"] == "logs/journal.txt"
        && f["value_from"] == "/etc/tiervault/secrets/psa-token"));
    assert!(
        stderr.contains("warning: known secret values were found"),
        "{stderr}"
    );

    // Omitted secrets, with why.
    for (source, why) in [
        (
            "/etc/tiervault/secrets/vault-passphrase",
            "named as a secret file by /etc/tiervault/ingestd.toml",
        ),
        (
            "/etc/tiervault/secrets/psa-token",
            "named as a secret file by /etc/tiervault/poold.toml",
        ),
        (
            "/etc/tiervault/appliance.key",
            "named as a secret file by /etc/tiervault/replicad.toml",
        ),
        (
            "/etc/tiervault/bmc.password",
            "named as a secret file by /etc/tiervault/healthd.toml",
        ),
        (
            "/etc/tiervault/vault.key",
            "its name says it holds a secret",
        ),
        ("/etc/tiervault/extra/stray.pem", "holds a private key"),
        ("/etc/tiervault/extra/blob", "binary content"),
    ] {
        let i = item(&manifest, source);
        assert_eq!(i["status"], "omitted", "{i}");
        assert_eq!(i["reason"], "secret", "{i}");
        assert!(
            i["detail"].as_str().expect("detail").starts_with(why),
            "{i}"
        );
        assert!(i["path"].is_null(), "{i}");
    }
    // Missing and failing pieces, with reasons; the bundle was still written.
    let audit = item(&manifest, "/var/lib/tiervault/poold/audit.log");
    assert_eq!(
        (&audit["status"], &audit["reason"]),
        (&"missing".into(), &"no such file".into())
    );
    let lsblk = item_starting(&manifest, "lsblk ");
    assert_eq!(
        (&lsblk["status"], &lsblk["reason"]),
        (&"missing".into(), &"not found in $PATH".into())
    );
    let smart_version = item(&manifest, "smartctl --version");
    assert_eq!(smart_version["status"], "failed", "{smart_version}");
    assert_eq!(smart_version["exit_code"], 2);
    assert_eq!(smart_version["reason"], "exit code 2");
    assert_eq!(smart_version["detail"], "smartctl: database missing");
    let smart = item_starting(&manifest, "smartctl --json -x ");
    assert_eq!(
        (&smart["status"], &smart["exit_code"]),
        (&"collected".into(), &4.into()),
        "{smart}"
    );
    let ipmi = item_starting(&manifest, "ipmitool fru print");
    assert_eq!(ipmi["status"], "skipped");
    let config = item(&manifest, "/etc/tiervault/healthd.toml");
    assert!(
        config["redactions"].as_u64().expect("count") >= 4,
        "{config}"
    );

    // journalctl got the documented arguments, --since as a time two days back.
    let args = journal.lines().next().expect("args line");
    assert!(
        args.contains("-u vault-* --since @") && args.contains("-o short-iso --no-pager"),
        "{args}"
    );
    assert!(
        args.contains(&format!(
            "--directory={}/var/log/journal",
            a.root().display()
        )),
        "{args}"
    );
    let since: i64 = args
        .split("--since @")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .expect("epoch");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    assert!(
        (now - 2 * 86400 - since).abs() < 3600,
        "since {since}, now {now}"
    );
}

#[test]
fn json_prints_the_manifest_and_an_existing_file_is_never_replaced() {
    let a = Appliance::new();
    let out = a.out("b.tar.zst");
    let run = a.run(&["--json", "--output", out.to_str().expect("utf8")]);
    check_exit(&run, 0, "support-bundle --json");
    let v = json_of(&run, "support-bundle --json");
    assert_eq!(v["format"], "tiervault-support-bundle/1");
    assert_eq!(v["output"], out.to_str().expect("utf8"));
    assert!(v["output_bytes"].as_u64().expect("bytes") > 0);
    assert!(
        v["summary"]["omitted"].as_u64().expect("omitted") >= 7,
        "{v}"
    );
    let before = fs::read(&out).expect("bundle");

    let again = a.run(&["--quiet", "--output", out.to_str().expect("utf8")]);
    check_exit(&again, 1, "support-bundle over an existing file");
    let line = error_line(&again, "support-bundle over an existing file");
    assert!(
        line.contains(out.to_str().expect("utf8")) && line.contains("already exists"),
        "{line}"
    );
    assert_eq!(fs::read(&out).expect("bundle"), before, "left as it was");
    assert_eq!(
        leftovers(out.parent().expect("dir")),
        ["b.tar.zst"],
        "no temporary file left"
    );
}

#[test]
fn an_empty_machine_still_gets_a_bundle_saying_what_is_missing() {
    let a = Appliance::empty();
    let out = a.out("empty.tar.zst");
    let run = a.run(&["--quiet", "--output", out.to_str().expect("utf8")]);
    check_exit(&run, 0, "support-bundle on an empty tree");
    assert!(
        run.stdout.is_empty() && run.stderr.is_empty(),
        "--quiet prints nothing"
    );
    let (_, members) = unpack(&out, "empty");
    let manifest: Value =
        serde_json::from_slice(member(&members, "MANIFEST.json")).expect("manifest");
    let etc = item(&manifest, "/etc/tiervault");
    assert_eq!(
        (&etc["status"], &etc["reason"]),
        (&"missing".into(), &"no such directory".into())
    );
    assert_eq!(
        item(&manifest, "/etc/mdadm/mdadm.conf")["status"],
        "missing"
    );
    assert_eq!(item(&manifest, "/var/lib/tiervault")["status"], "missing");
    assert_eq!(
        item(&manifest, "/var/lib/tiervault/ingestd/history.json")["status"],
        "missing"
    );
    let journal = item_starting(&manifest, "journalctl ");
    assert_eq!(
        (&journal["status"], &journal["reason"]),
        (&"missing".into(), &"not found in $PATH".into())
    );
    assert_eq!(
        item(&manifest, "vaultctl hw dump --json")["status"],
        "failed"
    );
    member(&members, "versions/vaultctl.txt");
    member(&members, "versions/uname.txt");
}

#[test]
fn default_name_carries_host_and_time() {
    let a = Appliance::empty();
    let dir = a.tmp.path().join("out");
    fs::create_dir_all(&dir).expect("out");
    let run = a.run(&["--quiet"]);
    check_exit(&run, 0, "support-bundle without --output");
    let names = leftovers(&dir);
    assert_eq!(names.len(), 1, "{names:?}");
    let name = &names[0];
    let stem = name.strip_suffix(".tar.zst").expect(".tar.zst");
    let stamp = stem.rsplit('-').next().expect("stamp");
    assert!(stem.starts_with("tiervault-support-"), "{name}");
    assert!(
        stamp.len() == 16 && stamp.as_bytes()[8] == b'T' && stamp.ends_with('Z'),
        "UTC stamp like 20250101T120000Z: {name}"
    );
    unpack(&dir.join(name), stem);
}

/// A secret in a file's name: no redaction rule rewrites names, so the search of the written
/// archive must catch it, refuse the bundle, and name the file without showing the secret.
#[test]
fn the_final_search_refuses_a_bundle_still_holding_a_secret() {
    let a = Appliance::new();
    write(
        &a.root()
            .join(format!("etc/tiervault/notes-{PASSPHRASE}.txt")),
        "remember to rotate\n",
    );
    let out = a.out("refused.tar.zst");
    let run = a.run(&["--quiet", "--output", out.to_str().expect("utf8")]);
    check_exit(&run, 1, "support-bundle with a secret in a file name");
    let line = error_line(&run, "support-bundle with a secret in a file name");
    assert!(
        line.contains("refused/config/etc/tiervault/notes-<redacted>.txt"),
        "{line}"
    );
    assert!(
        line.contains("/etc/tiervault/secrets/vault-passphrase"),
        "names the secret's source: {line}"
    );
    assert!(!line.contains(PASSPHRASE), "{line}");
    assert!(!out.exists());
    assert!(
        leftovers(out.parent().expect("dir")).is_empty(),
        "no temporary file left"
    );
}

#[test]
fn help_and_usage() {
    let help = bare_command(vaultctl())
        .args(["support-bundle", "--help"])
        .output()
        .expect("help");
    check_exit(&help, 0, "support-bundle --help");
    let text = String::from_utf8_lossy(&help.stdout);
    for part in [
        "--output",
        "--since",
        "--root",
        "MANIFEST.json",
        "Secrets never leave the machine",
        "Exit codes",
    ] {
        assert!(text.contains(part), "{part} not in --help:\n{text}");
    }
    let short = bare_command(vaultctl())
        .args(["support-bundle", "-h"])
        .output()
        .expect("-h");
    assert!(
        !String::from_utf8_lossy(&short.stdout).contains("--root"),
        "--root is for --help only"
    );
    let bad = bare_command(vaultctl())
        .args(["support-bundle", "--since", "7 days"])
        .output()
        .expect("bad since");
    check_exit(&bad, 2, "support-bundle --since '7 days'");
}
