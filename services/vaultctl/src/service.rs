//! Service mode: when the appliance's services run, `vaultctl` is a client of their D-Bus
//! API (`org.tiervault.Ingest1`) instead of opening the vault itself, so operators and remote
//! support go through the same access control and audit log as every other client.
//!
//! Chosen by `--bus ADDRESS` (`system`, or a D-Bus address), or automatically when no
//! `--vault` is given and the ingest service's name is on the system bus.

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Map, Value};
use tiervault_bus::client;
use tiervault_bus::BusAddress;

use crate::cli::Global;

pub const NAME: &str = "org.tiervault.Ingest1";
pub const ROOT: &str = "/org/tiervault/Ingest1";
pub const MANAGER: &str = "org.tiervault.Ingest1.Manager";
pub const JOB: &str = "org.tiervault.Ingest1.Job";
pub const BACKUP_JOB: &str = "org.tiervault.Ingest1.BackupJob";
pub const SNAPSHOT: &str = "org.tiervault.Ingest1.Snapshot";
pub const ALERT: &str = "org.tiervault.Alert1";

const SYSTEM_SOCKET: &str = "/run/dbus/system_bus_socket";

/// A service's manager object, for commands that use the service when it runs (or when
/// `--bus` names a bus) and work on this machine otherwise.
pub struct Api {
    pub name: &'static str,
    pub root: &'static str,
    pub manager: &'static str,
    /// How errors name it ("the pool service").
    pub what: &'static str,
}

impl Api {
    /// The connection when the service is to be used: `--bus` given (the service must run
    /// there), else the system bus when the service runs on it; `None` to work without it.
    pub fn connect(&self, g: &Global) -> Result<Option<zbus::Connection>> {
        let bus = match &g.bus {
            Some(text) => BusAddress::parse(text),
            None if Path::new(SYSTEM_SOCKET).exists() => BusAddress::System,
            None => return Ok(None),
        };
        let explicit = g.bus.is_some();
        let conn = match zbus::block_on(tiervault_bus::connect(&bus, None)) {
            Ok(c) => c,
            Err(e) if explicit => return Err(e.into()),
            Err(_) => return Ok(None),
        };
        let running = zbus::block_on(async {
            let dbus = zbus::fdo::DBusProxy::new(&conn).await?;
            dbus.name_has_owner(self.name.try_into()?).await
        })
        .unwrap_or(false);
        match (running, explicit) {
            (true, _) => Ok(Some(conn)),
            (false, true) => bail!("{} ({}) is not running on {bus}", self.what, self.name),
            (false, false) => Ok(None),
        }
    }

    /// Calls `method` on the manager object.
    pub fn call<B, R>(&self, conn: &zbus::Connection, method: &str, body: &B) -> Result<R>
    where
        B: serde::Serialize + zbus::zvariant::DynamicType,
        R: for<'d> serde::Deserialize<'d> + zbus::zvariant::Type,
    {
        let reply = zbus::block_on(conn.call_method(
            Some(self.name),
            self.root,
            Some(self.manager),
            method,
            body,
        ))
        .map_err(|e| anyhow!(client::describe(&e)))?;
        reply
            .body()
            .deserialize::<R>()
            .map_err(|e| anyhow!("{}.{method}: unexpected reply: {e}", self.name))
    }
}

pub struct Client {
    conn: zbus::Connection,
    pub bus: BusAddress,
}

fn bus_err(e: zbus::Error) -> anyhow::Error {
    anyhow!(client::describe(&e))
}

impl Client {
    /// The service client this invocation should use, if any: `--bus`, else the system bus
    /// when the service runs there and no vault directory was named.
    pub fn choose(g: &Global) -> Result<Option<Client>> {
        if let Some(text) = &g.bus {
            let bus = BusAddress::parse(text);
            return Client::connect(bus).map(Some);
        }
        if g.vault.is_some() || !Path::new(SYSTEM_SOCKET).exists() {
            return Ok(None);
        }
        match Client::connect(BusAddress::System) {
            Ok(c) if c.service_running() => Ok(Some(c)),
            _ => Ok(None),
        }
    }

    /// For commands that only exist with the service.
    pub fn require(g: &Global) -> Result<Client> {
        let bus = BusAddress::parse(g.bus.as_deref().unwrap_or("system"));
        let c = Client::connect(bus)?;
        if !c.service_running() {
            bail!(
                "the ingest service ({NAME}) is not running on {}: start vault-ingestd, or pass --bus ADDRESS",
                c.bus
            );
        }
        Ok(c)
    }

    fn connect(bus: BusAddress) -> Result<Client> {
        let conn = zbus::block_on(tiervault_bus::connect(&bus, None))?;
        Ok(Client { conn, bus })
    }

    fn service_running(&self) -> bool {
        zbus::block_on(async {
            let dbus = zbus::fdo::DBusProxy::new(&self.conn).await?;
            dbus.name_has_owner(NAME.try_into()?).await
        })
        .unwrap_or(false)
    }

    /// Every object of the service: path → interface → properties.
    pub fn objects(&self) -> Result<std::collections::BTreeMap<String, client::Interfaces>> {
        zbus::block_on(client::managed_objects(&self.conn, NAME, ROOT)).map_err(bus_err)
    }

    /// The objects carrying `interface`, with that interface's properties, in path order.
    pub fn list(&self, interface: &str) -> Result<Vec<(String, Map<String, Value>)>> {
        Ok(self
            .objects()?
            .into_iter()
            .filter_map(|(path, mut ifaces)| ifaces.remove(interface).map(|p| (path, p)))
            .collect())
    }

    pub fn props(&self, path: &str, interface: &str) -> Result<Map<String, Value>> {
        zbus::block_on(client::properties(&self.conn, NAME, path, interface))
            .map_err(bus_err)
            .with_context(|| path.to_string())
    }

    /// Calls a method that starts a job; returns the job's path.
    pub fn start<B>(&self, path: &str, interface: &str, method: &str, body: &B) -> Result<String>
    where
        B: serde::Serialize + zbus::wire::DynamicType,
    {
        zbus::block_on(client::call_for_path(
            &self.conn, NAME, path, interface, method, body,
        ))
        .map_err(bus_err)
        .with_context(|| method.to_string())
    }

    pub fn call<B>(&self, path: &str, interface: &str, method: &str, body: &B) -> Result<()>
    where
        B: serde::Serialize + zbus::wire::DynamicType,
    {
        zbus::block_on(client::call(
            &self.conn, NAME, path, interface, method, body,
        ))
        .map_err(bus_err)
        .with_context(|| format!("{method} {path}"))
    }

    /// Follows a job until it ends, with a progress bar on a terminal; returns its
    /// final properties.
    pub fn wait(&self, job: &str, show: bool) -> Result<Map<String, Value>> {
        let bar = crate::progress::Ticker::start(show, {
            let conn = self.conn.clone();
            let job = job.to_string();
            move || {
                let p =
                    zbus::block_on(client::properties(&conn, NAME, &job, JOB)).unwrap_or_default();
                let n = |k: &str| p.get(k).and_then(Value::as_u64).unwrap_or(0);
                let status = p
                    .get("Status")
                    .and_then(Value::as_str)
                    .unwrap_or("?")
                    .to_string();
                (n("BytesDone"), n("BytesTotal"), status)
            }
        });
        loop {
            let p = self.props(job, JOB)?;
            let status = p.get("Status").and_then(Value::as_str).unwrap_or_default();
            if !matches!(status, "queued" | "running") {
                drop(bar);
                return Ok(p);
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// One line per job for humans.
pub fn job_line(path: &str, p: &Map<String, Value>) -> String {
    let s = |k: &str| {
        p.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let id = path.rsplit('/').next().unwrap_or_default();
    let what = if s("BackupJob").is_empty() {
        s("Operation")
    } else {
        format!("{} {}", s("Operation"), s("BackupJob"))
    };
    let started = p.get("Started").and_then(Value::as_u64).unwrap_or(0);
    let when = if started == 0 {
        "-".to_string()
    } else {
        crate::output::rfc3339_ns(started as i64 * 1000)
    };
    format!(
        "{id:>6}  {:<9} {when:<35} {what}  {}",
        s("Status"),
        s("Message")
    )
}

/// JSON of a job for `--json`: its path and properties.
pub fn job_json(path: &str, p: Map<String, Value>) -> Value {
    json!({ "path": path, "properties": Value::Object(p) })
}
