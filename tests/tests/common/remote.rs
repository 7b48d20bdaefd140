//! The remote vault server `vault-remoted` driven as a black box, and a test peer for it.
//!
//! - [`remoted`]: the binary, built once per test process like [`super::cli::vaultctl`];
//! - [`Pki`]: a CA made with `vault-remoted ca …`, the server's certificate, client
//!   certificates per tenant, plus an unrelated CA and expired certificates for refusals;
//! - [`RemoteServer`]: a running `vault-remoted serve` on 127.0.0.1 with its config, data
//!   directory and log file;
//! - [`RawClient`]: a peer speaking the wire protocol (docs/wire.md) over mutual TLS, able to
//!   send anything, malformed frames included;
//! - [`push_vault`] and friends: fill a tenant's vault the way an appliance does (config and
//!   key files, every stored blob, every snapshot file) from a local vault made with
//!   `vaultctl`, without `vaultctl replicate`.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, OnceLock};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tiervault_tls::tokio_rustls::{rustls, TlsConnector};
use tiervault_tls::ClientTlsStream;
use tiervault_wire::{BlobKind, ErrorCode, Message, WireBlob, WireKeyFile};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::cli::{self, check_exit, Vault};
use super::{pack, tree};

/// How long the server may take to print `listening on ADDR`.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a [`RawClient`] waits for a frame or for a write to go through.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// How long [`RemoteServer::wait_log`] waits for a line to appear.
pub const LOG_TIMEOUT: Duration = Duration::from_secs(10);
/// `PutBlobs` batches made by [`batches`] stay below this many stored bytes.
pub const BATCH_BYTES: usize = 8 << 20;

/// Path of the `vault-remoted` binary under test: `$VAULT_REMOTED_BIN`, else built once per
/// test process with a nested `cargo build -p tiervault-remoted`.
pub fn remoted() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        cli::workspace_bin("VAULT_REMOTED_BIN", "tiervault-remoted", "vault-remoted")
    })
}

/// Runs `vault-remoted ARGS…` to completion, whatever its exit code.
pub fn run_remoted<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    Command::new(remoted())
        .args(&args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("spawning vault-remoted {}: {e}", show(&args)))
}

/// Runs `vault-remoted ARGS…` and asserts its exit code.
pub fn expect_remoted<I, S>(code: i32, args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let out = run_remoted(&args);
    check_exit(&out, code, &format!("vault-remoted {}", show(&args)));
    out
}

fn show(args: &[OsString]) -> String {
    args.iter()
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

/// An error and its sources on one line, as a log would show it.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        let _ = write!(s, ": {inner}");
        source = inner.source();
    }
    s
}

// ---------------------------------------------------------------------------------------------
// PKI

/// A client certificate and its key, as files.
#[derive(Clone, Debug)]
pub struct ClientCert {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl ClientCert {
    /// `--ca F --cert F --key F` for `vaultctl` commands that talk to a remote vault.
    pub fn tls_args(&self, pki: &Pki) -> Vec<OsString> {
        vec![
            "--ca".into(),
            pki.ca_pem().into_os_string(),
            "--cert".into(),
            self.cert.clone().into_os_string(),
            "--key".into(),
            self.key.clone().into_os_string(),
        ]
    }
}

/// The operator's CA (made with `vault-remoted ca init`), the server certificate for
/// `127.0.0.1` and `localhost`, and an unrelated CA of the same name for "wrong CA" refusals.
pub struct Pki {
    tmp: TempDir,
    /// The CA directory: `ca.pem`, `ca.key`.
    pub ca_dir: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// Another CA with the same (default) name: its certificates must not be accepted.
    pub other_ca_dir: PathBuf,
    issued: AtomicUsize,
}

impl Pki {
    pub fn new() -> Pki {
        let tmp = tempfile::Builder::new()
            .prefix("tiervault-pki-")
            .tempdir()
            .expect("creating a temporary directory for the PKI");
        let ca_dir = tmp.path().join("ca");
        let other_ca_dir = tmp.path().join("other-ca");
        for dir in [&ca_dir, &other_ca_dir] {
            expect_remoted(
                0,
                [
                    OsStr::new("ca"),
                    "init".as_ref(),
                    "--dir".as_ref(),
                    dir.as_os_str(),
                ],
            );
        }
        let server_cert = tmp.path().join("server.pem");
        let server_key = tmp.path().join("server.key");
        expect_remoted(
            0,
            [
                OsStr::new("ca"),
                "issue-server".as_ref(),
                "--dir".as_ref(),
                ca_dir.as_os_str(),
                "--name".as_ref(),
                "127.0.0.1".as_ref(),
                "--name".as_ref(),
                "localhost".as_ref(),
                "--cert".as_ref(),
                server_cert.as_os_str(),
                "--key".as_ref(),
                server_key.as_os_str(),
            ],
        );
        Pki {
            tmp,
            ca_dir,
            server_cert,
            server_key,
            other_ca_dir,
            issued: AtomicUsize::new(0),
        }
    }

    /// The CA certificate: what the server trusts for clients and clients trust for the server.
    pub fn ca_pem(&self) -> PathBuf {
        self.ca_dir.join(tiervault_tls::CA_CERT_FILE)
    }

    fn paths(&self, label: &str) -> ClientCert {
        let n = self.issued.fetch_add(1, Ordering::Relaxed);
        ClientCert {
            cert: self.tmp.path().join(format!("{label}-{n}.pem")),
            key: self.tmp.path().join(format!("{label}-{n}.key")),
        }
    }

    fn issue_with(&self, ca_dir: &Path, tenant: &str, label: &str) -> ClientCert {
        let c = self.paths(label);
        expect_remoted(
            0,
            [
                OsStr::new("ca"),
                "issue-client".as_ref(),
                "--dir".as_ref(),
                ca_dir.as_os_str(),
                "--tenant".as_ref(),
                tenant.as_ref(),
                "--cert".as_ref(),
                c.cert.as_os_str(),
                "--key".as_ref(),
                c.key.as_os_str(),
            ],
        );
        c
    }

    /// A client certificate for `tenant`, issued by the server's CA with `ca issue-client`.
    pub fn client(&self, tenant: &str) -> ClientCert {
        self.issue_with(&self.ca_dir, tenant, &format!("client-{tenant}"))
    }

    /// A client certificate for `tenant` issued by the unrelated CA.
    pub fn client_of_other_ca(&self, tenant: &str) -> ClientCert {
        self.issue_with(&self.other_ca_dir, tenant, &format!("other-ca-{tenant}"))
    }

    /// A client certificate for `tenant` from the server's CA whose validity ended yesterday.
    pub fn expired_client(&self, tenant: &str) -> ClientCert {
        let ca = tiervault_tls::Ca::load(&self.ca_dir).expect("loading the test CA");
        let t = tiervault_tls::Tenant::parse(tenant).expect("a valid tenant name");
        let now = time::OffsetDateTime::now_utc();
        let issued = ca
            .issue_client_with_validity(
                &t,
                now - time::Duration::days(30),
                now - time::Duration::days(1),
            )
            .expect("issuing an expired client certificate");
        let c = self.paths(&format!("expired-{tenant}"));
        issued
            .save(&c.cert, &c.key)
            .expect("saving the expired client certificate");
        c
    }
}

impl Default for Pki {
    fn default() -> Self {
        Self::new()
    }
}

// ---------------------------------------------------------------------------------------------
// Server

/// One `[tenants.<name>]` table of the server's config.
#[derive(Clone, Debug)]
pub struct TenantConf {
    pub name: String,
    /// `retention = "…"`, e.g. `"30d"`; `None` leaves it out (no lock).
    pub retention: Option<String>,
    /// `quota-bytes`; 0 = unlimited.
    pub quota_bytes: u64,
    /// `keep = { … }` (TOML inline table body, e.g. `"last = 1"`), for `vault-remoted prune`.
    pub keep: Option<String>,
}

impl TenantConf {
    /// A tenant without retention lock or quota.
    pub fn new(name: &str) -> TenantConf {
        TenantConf {
            name: name.to_owned(),
            retention: None,
            quota_bytes: 0,
            keep: None,
        }
    }

    pub fn keep(mut self, rules: &str) -> TenantConf {
        self.keep = Some(rules.to_owned());
        self
    }

    pub fn retention(mut self, r: &str) -> TenantConf {
        self.retention = Some(r.to_owned());
        self
    }

    pub fn quota(mut self, bytes: u64) -> TenantConf {
        self.quota_bytes = bytes;
        self
    }
}

/// A running `vault-remoted serve`, killed when dropped.
///
/// Layout of its temporary directory: `remoted.toml`, `data/` (the data directory; tenant
/// vaults under `data/tenants/<name>`), `remoted.log` (the server's stderr, appended to across
/// restarts), and copies of the CA certificate and the server's certificate and key.
pub struct RemoteServer {
    tmp: TempDir,
    config: PathBuf,
    data: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    addr: SocketAddr,
}

impl RemoteServer {
    /// Writes a config serving `tenants` with `pki`'s certificates and starts the server.
    pub fn start(pki: &Pki, tenants: &[TenantConf]) -> RemoteServer {
        Self::start_with(pki, tenants, "")
    }

    /// As [`start`](Self::start), with `top` (TOML lines such as `idle-timeout = "2s"`)
    /// added to the config's top-level table.
    pub fn start_with(pki: &Pki, tenants: &[TenantConf], top: &str) -> RemoteServer {
        let tmp = tempfile::Builder::new()
            .prefix("tiervault-remoted-")
            .tempdir()
            .expect("creating a temporary directory for the server");
        let dir = tmp.path();
        // Copies, so that the server does not depend on how long `pki` lives.
        let ca = dir.join("ca.pem");
        let cert = dir.join("server.pem");
        let key = dir.join("server.key");
        for (from, to) in [
            (pki.ca_pem(), &ca),
            (pki.server_cert.clone(), &cert),
            (pki.server_key.clone(), &key),
        ] {
            fs::copy(&from, to)
                .unwrap_or_else(|e| panic!("copying {} to {}: {e}", from.display(), to.display()));
        }
        let data = dir.join("data");
        let mut text = format!(
            "version = 1\nlisten = \"127.0.0.1:0\"\ndata-dir = {}\n{top}\n\n[tls]\nca = {}\ncert = {}\nkey = {}\n",
            toml_str(&data),
            toml_str(&ca),
            toml_str(&cert),
            toml_str(&key)
        );
        for t in tenants {
            let _ = write!(text, "\n[tenants.{}]\n", t.name);
            if let Some(r) = &t.retention {
                let _ = writeln!(text, "retention = \"{r}\"");
            }
            let _ = writeln!(text, "quota-bytes = {}", t.quota_bytes);
            if let Some(k) = &t.keep {
                let _ = writeln!(text, "keep = {{ {k} }}");
            }
        }
        let config = dir.join("remoted.toml");
        fs::write(&config, text).expect("writing the server config");
        let mut server = RemoteServer {
            config,
            data,
            log: dir.join("remoted.log"),
            child: None,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            tmp,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("opening the server log");
        let level = std::env::var("REMOTED_LOG").unwrap_or_else(|_| "info".to_owned());
        let mut child = Command::new(remoted())
            .arg("serve")
            .arg("--config")
            .arg(&self.config)
            .env("REMOTED_LOG", level)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {} serve: {e}", remoted().display()));
        let mut stdout = BufReader::new(child.stdout.take().expect("a piped stdout"));
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let first = stdout.read_line(&mut line).map(|_| line);
            let _ = tx.send(first);
            // Keep the pipe drained so that the server never blocks on it.
            let _ = std::io::copy(&mut stdout, &mut std::io::sink());
        });
        let first = rx.recv_timeout(START_TIMEOUT);
        let addr = match &first {
            Ok(Ok(line)) => line
                .trim_end()
                .strip_prefix("listening on ")
                .and_then(|a| a.parse::<SocketAddr>().ok()),
            _ => None,
        };
        match addr {
            Some(addr) => {
                self.addr = addr;
                self.child = Some(child);
            }
            None => {
                let _ = child.kill();
                let status = child.wait();
                panic!(
                    "vault-remoted serve did not report `listening on ADDR` within {}s \
                     (first stdout line: {first:?}; status {status:?})\n--- server log ---\n{}",
                    START_TIMEOUT.as_secs(),
                    self.log()
                );
            }
        }
    }

    /// The address the server listens on (changes across [`restart`](Self::restart)).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// Where the server keeps `tenant`'s vault (config.rs `tenant_dir`).
    pub fn tenant_dir(&self, tenant: &str) -> PathBuf {
        self.data.join("tenants").join(tenant)
    }

    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// The CA certificate the server uses (a copy of the [`Pki`]'s).
    pub fn ca_pem(&self) -> PathBuf {
        self.tmp.path().join("ca.pem")
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the server if it runs, then starts it again with the same config and data.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Panics (with the log) unless the server process is still running.
    pub fn assert_running(&mut self) {
        let status = match &mut self.child {
            Some(c) => c.try_wait().expect("asking for the server's status"),
            None => panic!("the server was killed by the test"),
        };
        if let Some(status) = status {
            panic!(
                "vault-remoted exited ({status})\n--- server log ---\n{}",
                self.log()
            );
        }
    }

    /// The server's log so far (stderr of every run), escape sequences removed.
    pub fn log(&self) -> String {
        let mut bytes = Vec::new();
        if let Ok(mut f) = fs::File::open(&self.log) {
            let _ = f.read_to_end(&mut bytes);
        }
        strip_ansi(&String::from_utf8_lossy(&bytes))
    }

    /// A position in the log: [`wait_log`](Self::wait_log) looks only at what follows it.
    pub fn log_mark(&self) -> usize {
        fs::metadata(&self.log).map_or(0, |m| m.len() as usize)
    }

    /// Waits until a log line written after `mark` contains every one of `needles`; returns
    /// that line. Panics with the whole log after [`LOG_TIMEOUT`].
    pub fn wait_log(&self, mark: usize, needles: &[&str]) -> String {
        let deadline = Instant::now() + LOG_TIMEOUT;
        loop {
            let mut bytes = Vec::new();
            if let Ok(mut f) = fs::File::open(&self.log) {
                let _ = f.read_to_end(&mut bytes);
            }
            let tail = strip_ansi(&String::from_utf8_lossy(bytes.get(mark..).unwrap_or(&[])));
            if let Some(line) = tail.lines().find(|l| needles.iter().all(|n| l.contains(n))) {
                return line.to_owned();
            }
            if Instant::now() > deadline {
                panic!(
                    "no server log line containing {needles:?} within {}s\n--- server log ---\n{}",
                    LOG_TIMEOUT.as_secs(),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `vault-remoted SUBCOMMAND --config F REST…` (operator commands: forget, gc).
    pub fn operator(&self, subcommand: &str, rest: &[&str]) -> Output {
        let mut args: Vec<OsString> = vec![subcommand.into(), "--config".into()];
        args.push(self.config.clone().into_os_string());
        args.extend(rest.iter().map(OsString::from));
        run_remoted(&args)
    }
}

impl Drop for RemoteServer {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "--- vault-remoted log ({}) ---\n{}",
                self.log.display(),
                self.log()
            );
        }
    }
}

fn toml_str(p: &Path) -> String {
    let s = p.to_str().expect("temporary paths are UTF-8");
    assert!(
        !s.contains(['"', '\\']),
        "path {s} would need escaping in TOML"
    );
    format!("\"{s}\"")
}

/// Removes ANSI escape sequences (`ESC [ … letter`), in case the log is coloured anyway.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Test peer

/// A client speaking the replication protocol over mutual TLS, on a private tokio runtime.
/// Nothing is checked on its side: it sends what the test says and reports what comes back.
pub struct RawClient {
    rt: tokio::runtime::Runtime,
    stream: ClientTlsStream,
    buf: Vec<u8>,
    next_req: u64,
}

impl RawClient {
    /// Connects to `server` with the client certificate `cert`, trusting `ca_pem` for the
    /// server. `Err` carries the handshake failure as [`tiervault_tls::connect`] reports it.
    pub fn connect(
        server: &RemoteServer,
        cert: &ClientCert,
        ca_pem: &Path,
    ) -> Result<RawClient, String> {
        let config = tiervault_tls::client_config(ca_pem, &cert.cert, &cert.key)
            .map_err(|e| format!("client TLS configuration: {}", error_chain(&e)))?;
        Self::connect_with(server.addr(), config)
    }

    /// Connects without any client certificate (a rustls configuration made here: TLS 1.3,
    /// the tiervault ALPN, the server's CA, no client authentication).
    pub fn connect_without_certificate(
        server: &RemoteServer,
        ca_pem: &Path,
    ) -> Result<RawClient, String> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::CertificateDer;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca_pem).expect("reading the CA PEM") {
            roots
                .add(cert.expect("a CA certificate"))
                .expect("a usable CA certificate");
        }
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3 with ring")
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = vec![tiervault_tls::ALPN.to_vec()];
        Self::connect_with(server.addr(), Arc::new(config))
    }

    /// Connects to `addr` (named `127.0.0.1` for the server certificate) with `config`.
    pub fn connect_with(
        addr: SocketAddr,
        config: Arc<rustls::ClientConfig>,
    ) -> Result<RawClient, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("starting a tokio runtime: {e}"))?;
        let stream = rt.block_on(async {
            let tcp = TcpStream::connect(addr)
                .await
                .map_err(|e| format!("connecting to {addr}: {e}"))?;
            let connector = TlsConnector::from(config);
            tiervault_tls::connect(&connector, "127.0.0.1", tcp)
                .await
                .map_err(|e| error_chain(&e))
        })?;
        Ok(RawClient {
            rt,
            stream,
            buf: Vec::new(),
            next_req: 1,
        })
    }

    /// Sends `msg` with a fresh request id and returns the reply carrying that id. Replies to
    /// other ids are skipped, except an `Error` with id 0: the server's refusal of the whole
    /// connection. `Err` when the connection ends first or nothing comes within [`IO_TIMEOUT`].
    pub fn request(&mut self, msg: Message) -> Result<Message, String> {
        let req = self.send(&msg)?;
        loop {
            match self.read_reply()? {
                None => {
                    return Err(format!(
                        "the server closed the connection without answering {} (req {req})",
                        msg.type_name()
                    ))
                }
                Some((r, reply)) if r == req => return Ok(reply),
                Some((0, reply @ Message::Error { .. })) => return Ok(reply),
                Some((r, other)) => eprintln!(
                    "RawClient: skipping {} for req {r} while waiting for req {req}",
                    other.type_name()
                ),
            }
        }
    }

    /// Sends `msg` with a fresh request id without waiting for its reply; returns the id.
    pub fn send(&mut self, msg: &Message) -> Result<u64, String> {
        let req = self.next_req;
        self.next_req += 1;
        let frame = tiervault_wire::encode(req, msg)
            .map_err(|e| format!("encoding {}: {}", msg.type_name(), error_chain(&e)))?;
        self.send_raw(&frame)?;
        Ok(req)
    }

    /// The request id the next [`send`](Self::send) will use.
    pub fn next_req(&self) -> u64 {
        self.next_req
    }

    /// Writes `bytes` as they are (malformed frames, partial frames) and flushes.
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<(), String> {
        let stream = &mut self.stream;
        // The timer must be made inside the runtime, hence the async blocks here and below.
        let written = self.rt.block_on(async {
            tokio::time::timeout(IO_TIMEOUT, async {
                stream.write_all(bytes).await?;
                stream.flush().await
            })
            .await
        });
        match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("writing {} bytes: {e}", bytes.len())),
            Err(_) => Err(format!(
                "writing {} bytes took more than {}s",
                bytes.len(),
                IO_TIMEOUT.as_secs()
            )),
        }
    }

    /// The next frame from the server; `None` when it closed the connection cleanly between
    /// frames. A read error (cut connection, malformed frame) or a timeout is `Err`.
    pub fn read_reply(&mut self) -> Result<Option<(u64, Message)>, String> {
        let (stream, buf) = (&mut self.stream, &mut self.buf);
        match self.rt.block_on(async {
            tokio::time::timeout(IO_TIMEOUT, tiervault_wire::read_frame(stream, buf)).await
        }) {
            Ok(Ok(frame)) => Ok(frame),
            Ok(Err(e)) => Err(error_chain(&e)),
            Err(_) => Err(format!("no frame within {}s", IO_TIMEOUT.as_secs())),
        }
    }

    /// Reads until the server ends the connection; returns the frames received before.
    /// A cut (reset, end without TLS close) counts as closing too; a timeout panics.
    pub fn expect_closed(&mut self) -> Vec<(u64, Message)> {
        let mut frames = Vec::new();
        loop {
            match self.read_reply() {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => return frames,
                Err(e) if e.starts_with("no frame within") => {
                    panic!("the server did not close the connection: {e}; got {frames:?}")
                }
                Err(e) => {
                    eprintln!("RawClient: connection ended with: {e}");
                    return frames;
                }
            }
        }
    }

    /// Sends a TLS close (our half of the connection ends; replies can still be read).
    pub fn shutdown(&mut self) -> Result<(), String> {
        let stream = &mut self.stream;
        self.rt
            .block_on(async { tokio::time::timeout(IO_TIMEOUT, stream.shutdown()).await })
            .map_err(|_| "closing took too long".to_owned())?
            .map_err(|e| format!("closing: {e}"))
    }

    /// `Hello` with protocol 1; returns the reply.
    pub fn hello(&mut self, vault_id: [u8; 32]) -> Result<Message, String> {
        self.request(Message::Hello {
            proto: tiervault_wire::PROTOCOL_VERSION,
            client: "test".to_owned(),
            vault_id,
        })
    }

    /// `Hello` that must be answered by `Welcome`; returns `has_vault`.
    pub fn welcome(&mut self, vault_id: [u8; 32]) -> bool {
        match self.hello(vault_id) {
            Ok(Message::Welcome { has_vault, .. }) => has_vault,
            other => panic!("Hello: expected Welcome, got {other:?}"),
        }
    }

    /// `ListSnapshots`, which must succeed.
    pub fn list(&mut self) -> Vec<tiervault_wire::SnapshotEntry> {
        match self.request(Message::ListSnapshots) {
            Ok(Message::SnapshotList { snapshots }) => snapshots,
            other => panic!("ListSnapshots: expected SnapshotList, got {other:?}"),
        }
    }

    /// `Have`, which must succeed with one answer per id.
    pub fn have(&mut self, ids: &[[u8; 32]]) -> Vec<bool> {
        match self.request(Message::Have { ids: ids.to_vec() }) {
            Ok(Message::HaveReply { held }) if held.len() == ids.len() => held,
            other => panic!(
                "Have of {} ids: expected HaveReply, got {other:?}",
                ids.len()
            ),
        }
    }

    /// `PutBlobs`, which must be answered `PutOk`; returns (stored, present).
    pub fn put_blobs(&mut self, blobs: &[WireBlob]) -> (u32, u32) {
        match self.request(Message::PutBlobs {
            blobs: blobs.to_vec(),
        }) {
            Ok(Message::PutOk { stored, present }) => (stored, present),
            other => panic!(
                "PutBlobs of {} blobs: expected PutOk, got {other:?}",
                blobs.len()
            ),
        }
    }
}

/// Asserts that `reply` is `Error` with `code`; returns its message. `what` names the request.
pub fn expect_error(reply: Result<Message, String>, code: ErrorCode, what: &str) -> String {
    match reply {
        Ok(Message::Error { code: c, message }) if c == code => message,
        other => panic!("{what}: expected Error {code:?}, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The appliance's side: a local vault sent over the wire

/// A small local vault with one backup of a few dozen files (`<tmp>/src`).
pub fn backed_up_vault(seed: u64) -> Vault {
    let v = Vault::new();
    tree::bulk_files(&v.scratch("src"), 40, 200..30_000, 0.5, seed);
    v.backup(&[v.scratch("src")]);
    v
}

/// Adds a few new files to `<tmp>/src` of `v` and backs it up again: new data, meta and refs
/// blobs and a new snapshot.
pub fn back_up_more(v: &Vault, seed: u64) {
    tree::bulk_files(
        &v.scratch("src").join(format!("more-{seed}")),
        12,
        2_000..20_000,
        1.0,
        seed,
    );
    v.backup(&[v.scratch("src")]);
}

/// The `id` of a vault's `config`, decoded.
pub fn vault_id_of(vault: &Path) -> [u8; 32] {
    let path = vault.join("config");
    let bytes = fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let v: serde_json::Value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
    let hex_id = v["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{} has no string id", path.display()));
    hex::decode(hex_id)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .unwrap_or_else(|| panic!("{}: id {hex_id:?} is not 32 bytes of hex", path.display()))
}

/// `PutVaultMeta` with the vault's `config` and every file of its `keys/`.
pub fn vault_meta(vault: &Path) -> Message {
    let config = fs::read(vault.join("config")).expect("reading the vault config");
    let mut keys = Vec::new();
    let mut entries: Vec<PathBuf> = fs::read_dir(vault.join("keys"))
        .expect("listing the vault's keys")
        .map(|e| e.expect("a keys entry").path())
        .collect();
    entries.sort();
    for path in entries {
        keys.push(WireKeyFile {
            name: path
                .file_name()
                .expect("a file name")
                .to_string_lossy()
                .into_owned(),
            file: fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display())),
        });
    }
    Message::PutVaultMeta { config, keys }
}

/// First 16 bytes of BLAKE3 of a stored blob (docs/format.md 5).
pub fn digest16(stored: &[u8]) -> [u8; 16] {
    let mut d = [0u8; 16];
    d.copy_from_slice(&blake3::hash(stored).as_bytes()[..16]);
    d
}

/// A blob as `PutBlobs` carries it, with its correct digest.
pub fn wire_blob(id: [u8; 32], kind: BlobKind, stored: Vec<u8>) -> WireBlob {
    WireBlob {
        id,
        kind,
        digest: digest16(&stored),
        stored,
    }
}

/// Every blob of every pack of a vault (default data directory), in pack and trailer order,
/// duplicates left out.
pub fn stored_blobs(vault: &Path) -> Vec<WireBlob> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for p in pack::all(vault) {
        let bytes =
            fs::read(&p.path).unwrap_or_else(|e| panic!("reading {}: {e}", p.path.display()));
        for e in &p.entries {
            if !seen.insert(e.id) {
                continue;
            }
            let start = usize::try_from(e.offset).expect("fits");
            let stored = bytes[start..start + e.stored_len as usize].to_vec();
            let kind = BlobKind::from_code(e.kind)
                .unwrap_or_else(|| panic!("{}: blob kind {}", p.path.display(), e.kind));
            out.push(wire_blob(e.id, kind, stored));
        }
    }
    out
}

/// Every snapshot file of a vault: (id, bytes), by name.
pub fn snapshot_files(vault: &Path) -> Vec<([u8; 32], Vec<u8>)> {
    let dir = vault.join("snapshots");
    let mut names: Vec<String> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
        .map(|e| {
            e.expect("a snapshots entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit()))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|n| {
            let id = <[u8; 32]>::try_from(hex::decode(&n).expect("hex")).expect("32 bytes");
            let file = fs::read(dir.join(&n)).expect("reading a snapshot file");
            (id, file)
        })
        .collect()
}

/// `blobs` cut into `PutBlobs` batches of at most [`BATCH_BYTES`] stored bytes.
pub fn batches(blobs: &[WireBlob]) -> Vec<Vec<WireBlob>> {
    let mut out: Vec<Vec<WireBlob>> = Vec::new();
    let mut size = 0;
    for b in blobs {
        if out.is_empty() || size + b.stored.len() > BATCH_BYTES {
            out.push(Vec::new());
            size = 0;
        }
        size += b.stored.len();
        out.last_mut().expect("a batch").push(b.clone());
    }
    out
}

/// What [`push_vault`] sent.
#[derive(Clone, Debug)]
pub struct Pushed {
    pub vault_id: [u8; 32],
    /// Every blob id sent.
    pub blobs: Vec<[u8; 32]>,
    /// Every snapshot id sent, by name.
    pub snapshots: Vec<[u8; 32]>,
}

/// Sends a whole local vault on a fresh connection: `Hello`, `PutVaultMeta`, every stored
/// blob in batches, every snapshot file. Panics on any reply but the expected one.
pub fn push_vault(client: &mut RawClient, vault: &Path) -> Pushed {
    let vault_id = vault_id_of(vault);
    client.welcome(vault_id);
    match client.request(vault_meta(vault)) {
        Ok(Message::Ok) => {}
        other => panic!("PutVaultMeta: expected Ok, got {other:?}"),
    }
    let blobs = stored_blobs(vault);
    for batch in batches(&blobs) {
        let (stored, present) = client.put_blobs(&batch);
        assert_eq!(
            (stored + present) as usize,
            batch.len(),
            "PutOk must account for every blob of the batch"
        );
    }
    let mut snapshots = Vec::new();
    for (id, file) in snapshot_files(vault) {
        match client.request(Message::PutSnapshot { id, file }) {
            Ok(Message::Ok) => snapshots.push(id),
            other => panic!(
                "PutSnapshot {}: expected Ok, got {other:?}",
                hex::encode(id)
            ),
        }
    }
    Pushed {
        vault_id,
        blobs: blobs.iter().map(|b| b.id).collect(),
        snapshots,
    }
}

/// Connects as `cert` and pushes `vault` ([`push_vault`]), then closes the connection.
pub fn push_vault_as(server: &RemoteServer, cert: &ClientCert, vault: &Path) -> Pushed {
    let mut c = RawClient::connect(server, cert, &server.ca_pem())
        .unwrap_or_else(|e| panic!("connecting to push a vault: {e}"));
    let pushed = push_vault(&mut c, vault);
    let _ = c.shutdown();
    pushed
}

/// Checks a tenant's vault as its owner would: `vaultctl verify` with the source vault's key
/// succeeds, and every snapshot `vaultctl snapshots` lists restores. Returns the snapshot ids.
pub fn assert_tenant_consistent(
    server: &RemoteServer,
    tenant: &str,
    source: &Vault,
) -> Vec<String> {
    static RESTORES: AtomicUsize = AtomicUsize::new(0);
    let replica = source.at(server.tenant_dir(tenant));
    replica.expect(0, ["verify"]);
    let mut ids = Vec::new();
    for snap in replica.snapshots() {
        let id = cli::snap_id(&snap);
        let n = RESTORES.fetch_add(1, Ordering::Relaxed);
        let target = source.scratch(&format!("restore-{tenant}-{n}"));
        replica.restore(&id, &target);
        ids.push(id);
    }
    ids
}

/// A listing of a directory tree for before/after comparisons: (relative path, size,
/// BLAKE3 of the content for files), skipping the subtrees named in `skip`.
pub fn listing(root: &Path, skip: &[&str]) -> Vec<(String, u64, String)> {
    fn walk(root: &Path, dir: &Path, skip: &[&str], out: &mut Vec<(String, u64, String)>) {
        let Ok(rd) = fs::read_dir(dir) else {
            return;
        };
        let mut entries: Vec<PathBuf> = rd.map(|e| e.expect("a dir entry").path()).collect();
        entries.sort();
        for p in entries {
            let rel = p
                .strip_prefix(root)
                .expect("below the root")
                .to_string_lossy()
                .into_owned();
            if skip
                .iter()
                .any(|s| rel == *s || rel.starts_with(&format!("{s}/")))
            {
                continue;
            }
            let meta = fs::symlink_metadata(&p).expect("stat");
            if meta.is_dir() {
                out.push((format!("{rel}/"), 0, String::new()));
                walk(root, &p, skip, out);
            } else {
                let hash = fs::read(&p)
                    .map(|b| blake3::hash(&b).to_hex().to_string())
                    .unwrap_or_default();
                out.push((rel, meta.len(), hash));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, skip, &mut out);
    out
}
