//! The appliance's alerts as D-Bus objects: one object per alert under the service's
//! `alerts/` path, interface `org.tiervault.Alert1`, with an `Acknowledge` method. The
//! [`AlertStore`] (tiervault-alerts) is the truth; this module mirrors it onto the bus and
//! emits `PropertiesChanged` when an alert changes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tiervault_alerts::{Alert, AlertError, AlertStore, NewAlert, Raised};
use zbus::interface;

use crate::mirror::{prop, Mirror, Props};
use crate::usec;
use crate::{Audit, BusError, Caller};

pub const ALERT_INTERFACE: &str = "org.tiervault.Alert1";

/// The alert store of one service and the objects published for it.
#[derive(Clone)]
pub struct AlertBoard {
    inner: Arc<Inner>,
}

struct Inner {
    store: Mutex<AlertStore>,
    audit: Arc<Audit>,
    /// `<service path>/alerts`
    base: String,
    /// What was announced on the bus.
    mirror: Mutex<Mirror<u64>>,
    /// The store changed since the last [`AlertBoard::publish`].
    dirty: AtomicBool,
}

impl AlertBoard {
    pub fn new(store: AlertStore, audit: Arc<Audit>, service_path: &str) -> AlertBoard {
        AlertBoard {
            inner: Arc::new(Inner {
                store: Mutex::new(store),
                audit,
                base: format!("{service_path}/alerts"),
                mirror: Mutex::new(Mirror::new(ALERT_INTERFACE)),
                dirty: AtomicBool::new(true),
            }),
        }
    }

    fn store(&self) -> MutexGuard<'_, AlertStore> {
        self.inner.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn path_of(&self, id: u64) -> String {
        format!("{}/{id}", self.inner.base)
    }

    fn mark_dirty(&self) {
        self.inner.dirty.store(true, Ordering::Release);
    }

    /// Whether the store changed since the last publish (and resets the mark).
    pub fn take_dirty(&self) -> bool {
        self.inner.dirty.swap(false, Ordering::AcqRel)
    }

    /// Raises (or refreshes) an alert, to be published by the service's loop.
    pub fn raise(&self, new: NewAlert) -> Result<Raised, AlertError> {
        let now = tiervault_alerts::now_ns();
        let raised = self.store().raise(new, now);
        self.mark_dirty();
        if let Ok(r) = &raised {
            tracing::warn!(alert = r.id, new = r.new, "alert raised");
        }
        raised
    }

    /// Clears the active alert of (class, key), if any, to be published by the service's loop.
    pub fn clear(&self, class: &str, key: &str) -> Result<Option<u64>, AlertError> {
        let cleared = self.store().clear(class, key, tiervault_alerts::now_ns());
        self.mark_dirty();
        cleared
    }

    /// Raises `new` unless an active alert of its class and key already says the same (same
    /// severity and summary): a steady condition found on every poll must not rewrite the
    /// alert file each time. Returns the alert as it was before (when it was active) and as
    /// it is now, when anything changed.
    pub fn ensure(&self, new: NewAlert) -> Result<Option<(Option<Alert>, Alert)>, AlertError> {
        let before = self.store().find_active(&new.class, &new.key).cloned();
        if before
            .as_ref()
            .is_some_and(|b| b.severity == new.severity && b.summary == new.summary)
        {
            return Ok(None);
        }
        let raised = self.raise(new)?;
        Ok(self
            .store()
            .get(raised.id)
            .cloned()
            .map(|now| (before, now)))
    }

    /// Clears the active alert of (class, key) and returns it, or `None` when there is none
    /// (nothing is written then).
    pub fn clear_active(&self, class: &str, key: &str) -> Result<Option<Alert>, AlertError> {
        if self.store().find_active(class, key).is_none() {
            return Ok(None);
        }
        let Some(id) = self.clear(class, key)? else {
            return Ok(None);
        };
        Ok(self.store().get(id).cloned())
    }

    /// A copy of every alert in the store, in id order.
    pub fn snapshot(&self) -> Vec<Alert> {
        self.store().all().cloned().collect()
    }

    /// Makes the bus match the store: new alerts get objects (the ObjectManager announces
    /// them), changed ones emit PropertiesChanged, alerts dropped from the bounded history
    /// lose their objects. Called from one thread only (the service's loop, under
    /// `zbus::block_on`), never from an interface method.
    pub async fn publish(&self, conn: &zbus::Connection) -> zbus::Result<()> {
        let current = self
            .snapshot()
            .iter()
            .map(|a| (a.id, (self.path_of(a.id), properties(a))))
            .collect();
        let mut mirror = std::mem::replace(
            &mut *self.inner.mirror.lock().unwrap_or_else(|p| p.into_inner()),
            Mirror::new(ALERT_INTERFACE),
        );
        let result = mirror
            .sync(conn, current, |id| AlertObject {
                board: self.clone(),
                id: *id,
            })
            .await;
        *self.inner.mirror.lock().unwrap_or_else(|p| p.into_inner()) = mirror;
        result
    }
}

/// The property values of `a` that change over its life (used to find what changed).
fn properties(a: &Alert) -> Props {
    let ack = a.ack.as_ref();
    Props::from([
        ("Severity", prop(a.severity.get())),
        ("Priority", prop(a.priority().to_string())),
        ("Summary", prop(a.summary.clone())),
        ("Detail", prop(a.detail.clone())),
        ("LastSeen", prop(usec(a.last_seen_ns))),
        ("Count", prop(a.count)),
        ("Active", prop(a.is_active())),
        ("Cleared", prop(a.cleared_ns.map_or(0, usec))),
        ("Acknowledged", prop(ack.is_some())),
        (
            "AcknowledgedBy",
            prop(ack.map_or(String::new(), |k| k.by.clone())),
        ),
        ("AcknowledgedAt", prop(ack.map_or(0, |k| usec(k.at_ns)))),
        (
            "AcknowledgeComment",
            prop(ack.map_or(String::new(), |k| k.comment.clone())),
        ),
    ])
}

/// One alert on the bus.
pub struct AlertObject {
    board: AlertBoard,
    id: u64,
}

impl AlertObject {
    fn get<T>(&self, f: impl FnOnce(&Alert) -> T) -> zbus::fdo::Result<T> {
        let store = self.board.store();
        store
            .get(self.id)
            .map(f)
            .ok_or_else(|| zbus::fdo::Error::UnknownObject(format!("alert {} is gone", self.id)))
    }
}

/// An alert: what happened (Class, Key, Summary, Detail), how bad (Severity 1-10 and the
/// Priority it maps to: P1, P2, P3, notify, record), when (Raised, LastSeen, Cleared, in
/// microseconds since the epoch; Cleared is 0 while the alert is active) and who acknowledged it.
#[interface(name = "org.tiervault.Alert1")]
impl AlertObject {
    /// Acknowledges the alert: records the caller, the time and the comment. Acknowledging
    /// again replaces the previous acknowledgement.
    async fn acknowledge(
        &self,
        comment: String,
        #[zbus(header)] header: zbus::message::Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<(), BusError> {
        let caller = Caller::identify(conn, &header).await;
        let result = self
            .board
            .store()
            .acknowledge(
                self.id,
                &caller.label(),
                &comment,
                tiervault_alerts::now_ns(),
            )
            .map_err(|e| match e {
                AlertError::NotFound(_) => BusError::NotFound(e.to_string()),
                AlertError::Invalid { .. } => BusError::InvalidArgument(e.to_string()),
                e => BusError::Failed(e.to_string()),
            });
        let shown = match &result {
            Ok(()) => Ok(format!("alert {} acknowledged", self.id)),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = self.board.inner.audit.record(
            &caller,
            &self.board.path_of(self.id),
            ALERT_INTERFACE,
            "Acknowledge",
            serde_json::json!({ "comment": comment }),
            &shown,
        ) {
            tracing::error!("{e}");
        }
        result?;
        self.board.mark_dirty();
        Ok(())
    }

    #[zbus(property)]
    fn id(&self) -> u64 {
        self.id
    }
    #[zbus(property)]
    fn source(&self) -> zbus::fdo::Result<String> {
        self.get(|a| a.source.clone())
    }
    #[zbus(property)]
    fn class(&self) -> zbus::fdo::Result<String> {
        self.get(|a| a.class.clone())
    }
    #[zbus(property)]
    fn key(&self) -> zbus::fdo::Result<String> {
        self.get(|a| a.key.clone())
    }
    #[zbus(property)]
    fn severity(&self) -> zbus::fdo::Result<u8> {
        self.get(|a| a.severity.get())
    }
    #[zbus(property)]
    fn priority(&self) -> zbus::fdo::Result<String> {
        self.get(|a| a.priority().to_string())
    }
    #[zbus(property)]
    fn summary(&self) -> zbus::fdo::Result<String> {
        self.get(|a| a.summary.clone())
    }
    #[zbus(property)]
    fn detail(&self) -> zbus::fdo::Result<String> {
        self.get(|a| a.detail.clone())
    }
    #[zbus(property)]
    fn raised(&self) -> zbus::fdo::Result<u64> {
        self.get(|a| usec(a.raised_ns))
    }
    #[zbus(property)]
    fn last_seen(&self) -> zbus::fdo::Result<u64> {
        self.get(|a| usec(a.last_seen_ns))
    }
    #[zbus(property)]
    fn count(&self) -> zbus::fdo::Result<u64> {
        self.get(|a| a.count)
    }
    #[zbus(property)]
    fn active(&self) -> zbus::fdo::Result<bool> {
        self.get(|a| a.is_active())
    }
    #[zbus(property)]
    fn cleared(&self) -> zbus::fdo::Result<u64> {
        self.get(|a| a.cleared_ns.map_or(0, usec))
    }
    #[zbus(property)]
    fn acknowledged(&self) -> zbus::fdo::Result<bool> {
        self.get(|a| a.ack.is_some())
    }
    #[zbus(property)]
    fn acknowledged_by(&self) -> zbus::fdo::Result<String> {
        self.get(|a| a.ack.as_ref().map_or(String::new(), |k| k.by.clone()))
    }
    #[zbus(property)]
    fn acknowledged_at(&self) -> zbus::fdo::Result<u64> {
        self.get(|a| a.ack.as_ref().map_or(0, |k| usec(k.at_ns)))
    }
    #[zbus(property)]
    fn acknowledge_comment(&self) -> zbus::fdo::Result<String> {
        self.get(|a| a.ack.as_ref().map_or(String::new(), |k| k.comment.clone()))
    }
}
