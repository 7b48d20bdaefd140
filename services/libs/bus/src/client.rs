//! The client side, for `vaultctl` and tests: reading every object of a service as JSON and
//! calling methods, with D-Bus errors shown by name.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use zbus::wire::Variant;

/// Properties of one object, by interface, as JSON.
pub type Interfaces = BTreeMap<String, Map<String, Value>>;

/// A D-Bus value as JSON: numbers, strings, booleans and object paths as themselves, arrays
/// and dictionaries as arrays and objects, structures as arrays.
pub fn variant_to_json(v: &Variant<'_>) -> Value {
    match v {
        Variant::U8(x) => Value::from(*x),
        Variant::Bool(x) => Value::from(*x),
        Variant::I16(x) => Value::from(*x),
        Variant::U16(x) => Value::from(*x),
        Variant::I32(x) => Value::from(*x),
        Variant::U32(x) => Value::from(*x),
        Variant::I64(x) => Value::from(*x),
        Variant::U64(x) => Value::from(*x),
        Variant::F64(x) => Value::from(*x),
        Variant::Str(s) => Value::from(s.as_str()),
        Variant::Signature(s) => Value::from(s.to_string()),
        Variant::ObjectPath(p) => Value::from(p.as_str()),
        Variant::Variant(inner) => variant_to_json(inner),
        Variant::Array(a) => Value::Array(a.inner().iter().map(variant_to_json).collect()),
        Variant::Dict(d) => {
            let mut m = Map::new();
            for (k, val) in d.iter() {
                let key = match variant_to_json(k) {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                m.insert(key, variant_to_json(val));
            }
            Value::Object(m)
        }
        Variant::Structure(s) => Value::Array(s.fields().iter().map(variant_to_json).collect()),
        #[cfg(unix)]
        Variant::Fd(_) => Value::Null,
    }
}

/// Every object under `root` of `dest` (its ObjectManager), as path → interface → properties.
pub async fn managed_objects(
    conn: &zbus::Connection,
    dest: &str,
    root: &str,
) -> zbus::Result<BTreeMap<String, Interfaces>> {
    let proxy = zbus::fdo::ObjectManagerProxy::builder(conn)
        .destination(dest.to_string())
        .path(root.to_string())
        .build()
        .await?;
    let objects = proxy.get_managed_objects().await?;
    Ok(objects
        .into_iter()
        .map(|(path, ifaces)| {
            let ifaces = ifaces
                .into_iter()
                .map(|(name, props)| {
                    let props = props
                        .iter()
                        .map(|(k, v)| (k.clone(), variant_to_json(&Variant::from(v.clone()))))
                        .collect();
                    (name.to_string(), props)
                })
                .collect();
            (path.to_string(), ifaces)
        })
        .collect())
}

/// All properties of one interface of one object, as JSON.
pub async fn properties(
    conn: &zbus::Connection,
    dest: &str,
    path: &str,
    interface: &str,
) -> zbus::Result<Map<String, Value>> {
    let proxy = zbus::fdo::PropertiesProxy::builder(conn)
        .destination(dest.to_string())
        .path(path.to_string())
        .build()
        .await?;
    let all = proxy.get_all(interface.try_into()?).await?;
    Ok(all
        .iter()
        .map(|(k, v)| (k.clone(), variant_to_json(&Variant::from(v.clone()))))
        .collect())
}

/// Calls a method that answers with an object path (the methods that start a job).
pub async fn call_for_path<B>(
    conn: &zbus::Connection,
    dest: &str,
    path: &str,
    interface: &str,
    method: &str,
    body: &B,
) -> zbus::Result<String>
where
    B: serde::Serialize + zbus::wire::DynamicType,
{
    let reply = conn
        .call_method(Some(dest), path, Some(interface), method, body)
        .await?;
    let p: zbus::wire::OwnedObjectPath = reply.body().deserialize()?;
    Ok(p.to_string())
}

/// Calls a method that answers with nothing.
pub async fn call<B>(
    conn: &zbus::Connection,
    dest: &str,
    path: &str,
    interface: &str,
    method: &str,
    body: &B,
) -> zbus::Result<()>
where
    B: serde::Serialize + zbus::wire::DynamicType,
{
    conn.call_method(Some(dest), path, Some(interface), method, body)
        .await
        .map(|_| ())
}

/// A zbus error as an operator should read it: a D-Bus error by its name and message.
pub fn describe(e: &zbus::Error) -> String {
    match e {
        zbus::Error::MethodError(name, Some(msg), _) => format!("{name}: {msg}"),
        zbus::Error::MethodError(name, None, _) => name.to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_become_plain_json() {
        let v = Variant::from(vec!["a".to_string(), "b".to_string()]);
        assert_eq!(variant_to_json(&v), serde_json::json!(["a", "b"]));
        assert_eq!(variant_to_json(&Variant::from(7u64)), serde_json::json!(7));
        assert_eq!(
            variant_to_json(&Variant::from(0.5f64)),
            serde_json::json!(0.5)
        );
        assert_eq!(
            variant_to_json(&Variant::from(true)),
            serde_json::json!(true)
        );
        let p = zbus::wire::ObjectPath::try_from("/org/tiervault/Ingest1/jobs/3").expect("path");
        assert_eq!(
            variant_to_json(&Variant::from(p)),
            serde_json::json!("/org/tiervault/Ingest1/jobs/3")
        );
    }
}
