//! Connecting to the bus and taking the service's well-known name.

use std::fmt;

/// Which bus a service or client talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusAddress {
    /// The system bus (`/run/dbus/system_bus_socket`, or `$DBUS_SYSTEM_BUS_ADDRESS`).
    System,
    /// A D-Bus address such as `unix:path=/run/test/bus` (tests, a private bus).
    Address(String),
}

impl BusAddress {
    /// `system` names the system bus; anything else is taken as a D-Bus address.
    pub fn parse(text: &str) -> BusAddress {
        if text == "system" {
            BusAddress::System
        } else {
            BusAddress::Address(text.to_string())
        }
    }
}

impl fmt::Display for BusAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BusAddress::System => f.write_str("the system bus"),
            BusAddress::Address(a) => write!(f, "bus {a}"),
        }
    }
}

/// The system bus socket; its absence means no system bus to try.
const SYSTEM_BUS_SOCKET: &str = "/run/dbus/system_bus_socket";

/// The bus a service serves on, from its `--bus` flag or config (`system`, a D-Bus address,
/// `none`), and whether failing to serve there is fatal. Not set: the system bus if this host
/// has one, not fatal (a container, the tests); the units pass `--bus system`, so on the
/// appliance being off the bus is an error.
pub fn choose_bus(setting: Option<&str>) -> Option<(BusAddress, bool)> {
    match setting {
        Some("none") | Some("") => None,
        Some(a) => Some((BusAddress::parse(a), true)),
        None if std::env::var_os("DBUS_SYSTEM_BUS_ADDRESS").is_none()
            && !std::path::Path::new(SYSTEM_BUS_SOCKET).exists() =>
        {
            tracing::warn!("no system bus ({SYSTEM_BUS_SOCKET} is missing): running without D-Bus");
            None
        }
        None => Some((BusAddress::System, false)),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connecting to {bus}: {source}")]
    Connect {
        bus: BusAddress,
        source: zbus::Error,
    },
    #[error("registering {path} on {bus}: {source}")]
    Register {
        path: String,
        bus: BusAddress,
        source: zbus::Error,
    },
    #[error("taking the name {name} on {bus}: {source} (is another instance running, or does the bus policy not allow this user to own it?)")]
    Name {
        name: String,
        bus: BusAddress,
        source: zbus::Error,
    },
}

/// Connects to `bus` and, when `name` is given, takes that well-known name (failing if
/// another process holds it: two services writing one vault's state would corrupt it).
pub async fn connect(
    bus: &BusAddress,
    name: Option<&str>,
) -> Result<zbus::Connection, ConnectError> {
    let builder = match bus {
        BusAddress::System => zbus::connection::Builder::system(),
        BusAddress::Address(a) => zbus::connection::Builder::address(a.as_str()),
    };
    let conn = builder
        .build()
        .await
        .map_err(|source| ConnectError::Connect {
            bus: bus.clone(),
            source,
        })?;
    if let Some(name) = name {
        take_name(&conn, bus, name).await?;
    }
    Ok(conn)
}

/// Takes the well-known `name` on `conn` (failing if another process holds it). Services
/// register their objects first and take the name last, so a client never finds the name
/// without the objects.
pub async fn take_name(
    conn: &zbus::Connection,
    bus: &BusAddress,
    name: &str,
) -> Result<(), ConnectError> {
    conn.request_name(name)
        .await
        .map_err(|source| ConnectError::Name {
            name: name.to_string(),
            bus: bus.clone(),
            source,
        })
}

/// What every service does to go on the bus: connect, register an ObjectManager and the
/// service's `manager` object at `root`, then take `name` — last, so a client never finds
/// the name without the objects.
pub async fn serve<I: zbus::object_server::Interface>(
    bus: &BusAddress,
    name: &str,
    root: &str,
    manager: I,
) -> Result<zbus::Connection, ConnectError> {
    let conn = connect(bus, None).await?;
    let register = |source| ConnectError::Register {
        path: root.to_string(),
        bus: bus.clone(),
        source,
    };
    let server = conn.object_server();
    server
        .at(root, zbus::fdo::ObjectManager)
        .await
        .map_err(register)?;
    server.at(root, manager).await.map_err(register)?;
    take_name(&conn, bus, name).await?;
    Ok(conn)
}
