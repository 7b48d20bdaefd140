//! Who made a method call: for the audit log and for acknowledgements ("who, when").

use zbus::message::Header;

/// The peer behind a method call, as the bus daemon vouches for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The unique bus name (`:1.42`).
    pub sender: String,
    pub uid: Option<u32>,
    pub pid: Option<u32>,
    /// The user name from /etc/passwd, else the uid as text, else "unknown".
    pub user: String,
}

impl Caller {
    /// Asks the bus daemon for the credentials of the call's sender. A failure to ask is not
    /// fatal (the call was already let through by the bus policy); the caller is then
    /// recorded as unknown rather than the call refused.
    pub async fn identify(conn: &zbus::Connection, header: &Header<'_>) -> Caller {
        let sender = header.sender().map(|s| s.to_string()).unwrap_or_default();
        let mut caller = Caller {
            sender: sender.clone(),
            uid: None,
            pid: None,
            user: "unknown".into(),
        };
        let Some(name) = header.sender() else {
            return caller;
        };
        let Ok(proxy) = zbus::fdo::DBusProxy::new(conn).await else {
            return caller;
        };
        if let Ok(creds) = proxy
            .get_connection_credentials(zbus::names::BusName::Unique(name.to_owned()))
            .await
        {
            caller.uid = creds.unix_user_id();
            caller.pid = creds.process_id();
        }
        if let Some(uid) = caller.uid {
            caller.user = user_name(uid, "/etc/passwd");
        }
        caller
    }

    /// Shown in the audit log and in acknowledgements: `name (uid N)`.
    pub fn label(&self) -> String {
        match self.uid {
            Some(uid) if self.user != uid.to_string() => format!("{} (uid {uid})", self.user),
            Some(uid) => format!("uid {uid}"),
            None => format!("unknown ({})", self.sender),
        }
    }
}

/// The name of `uid` in the passwd file, else the number.
fn user_name(uid: u32, passwd: &str) -> String {
    let text = std::fs::read_to_string(passwd).unwrap_or_default();
    let want = uid.to_string();
    text.lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 2 && f[2] == want)
        .map_or(want.clone(), |f| f[0].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_come_from_passwd_else_the_number() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("passwd");
        std::fs::write(
            &p,
            "root:x:0:0::/root:/bin/sh\ntv-admin:x:1001:1001::/:/bin/false\n",
        )
        .expect("write");
        let p = p.to_str().expect("utf-8");
        assert_eq!(user_name(1001, p), "tv-admin");
        assert_eq!(user_name(0, p), "root");
        assert_eq!(user_name(4242, p), "4242");
        let c = Caller {
            sender: ":1.7".into(),
            uid: Some(1001),
            pid: Some(9),
            user: "tv-admin".into(),
        };
        assert_eq!(c.label(), "tv-admin (uid 1001)");
    }
}
