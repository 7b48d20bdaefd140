//! Keeping a set of D-Bus objects in step with the service's state: objects appear (the
//! ObjectManager announces them), change (one PropertiesChanged with just the changed values)
//! and disappear, from one diff of "what is" against "what was announced".

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use zbus::object_server::{Interface, SignalEmitter};
use zbus::wire::{OwnedVariant, Variant};

/// Property name → value, as an object's interface reports them.
pub type Props = HashMap<&'static str, OwnedVariant>;

/// A property value; only file descriptors fail to convert, and none are used here.
pub fn prop<'a>(v: impl Into<Variant<'a>>) -> OwnedVariant {
    OwnedVariant::try_from(v.into()).unwrap_or_else(|_| OwnedVariant::from(0u8))
}

/// The objects of one interface that were announced, by key, with the values announced.
pub struct Mirror<K> {
    interface: &'static str,
    published: BTreeMap<K, (String, Props)>,
}

impl<K: Ord + Clone> Mirror<K> {
    pub fn new(interface: &'static str) -> Mirror<K> {
        Mirror {
            interface,
            published: BTreeMap::new(),
        }
    }

    /// Whether an object for `key` has been announced.
    pub fn contains(&self, key: &K) -> bool {
        self.published.contains_key(key)
    }

    /// Makes the bus match `current` (key → (object path, properties)); `make` builds the
    /// interface object for a key that has none yet.
    pub async fn sync<I: Interface>(
        &mut self,
        conn: &zbus::Connection,
        current: BTreeMap<K, (String, Props)>,
        mut make: impl FnMut(&K) -> I,
    ) -> zbus::Result<()> {
        let server = conn.object_server();
        let gone: Vec<K> = self
            .published
            .keys()
            .filter(|k| !current.contains_key(*k))
            .cloned()
            .collect();
        for k in gone {
            if let Some((path, _)) = self.published.remove(&k) {
                server.remove::<I, _>(path.as_str()).await?;
            }
        }
        for (k, (path, props)) in current {
            match self.published.get(&k) {
                None => {
                    // An object the service registered itself (to answer a call with its
                    // path) was announced with the values of that moment: announce all of
                    // them again, as they may have changed since.
                    if server.at(path.as_str(), make(&k)).await?.is_some() {
                        self.announce(conn, &path, &props, None).await?;
                    }
                }
                Some((_, old)) if *old != props => {
                    let old = old.clone();
                    self.announce(conn, &path, &props, Some(&old)).await?;
                }
                Some(_) => {}
            }
            self.published.insert(k, (path, props));
        }
        Ok(())
    }

    /// One PropertiesChanged with the values of `props` that differ from `old` (all of
    /// them without `old`).
    async fn announce(
        &self,
        conn: &zbus::Connection,
        path: &str,
        props: &Props,
        old: Option<&Props>,
    ) -> zbus::Result<()> {
        let changed: HashMap<&str, Variant<'_>> = props
            .iter()
            .filter(|(name, v)| old.is_none_or(|o| o.get(*name) != Some(*v)))
            .map(|(name, v)| (*name, Variant::from(v.clone())))
            .collect();
        let emitter = SignalEmitter::new(conn, path)?;
        zbus::fdo::Properties::properties_changed(
            &emitter,
            self.interface.try_into()?,
            changed,
            Cow::Borrowed(&[]),
        )
        .await
    }
}
