//! What a published record may name.
//!
//! Publishing a record publishes what it says, and a record can say that
//! an internal artifact exists: a tree lists its entries' ids, a receipt
//! its inputs and outputs, a signature its subject. So no published record
//! may name an internal artifact of this store, and an artifact a
//! published record names may not be unpublished. "Names" is read without
//! the schema, so it holds for record types this build does not know: any
//! 32-byte byte string or 64-character hex text anywhere in the body that
//! is the id of an artifact here. (An id that is not stored here names
//! nothing another domain could learn about this store.)

use std::collections::{BTreeMap, BTreeSet};

use crate::error::{FederationError as Error, Result};
use asl_core::Visibility;
use asl_core::{ArtifactId, Store};
use asl_records::cbor::Value;
use asl_records::{looks_like_record, Record};

/// Every id-shaped value in the record `bytes` (none when they are not a record).
pub fn named(bytes: &[u8]) -> BTreeSet<ArtifactId> {
    let mut out = BTreeSet::new();
    if let Ok(r) = Record::decode(bytes) {
        walk(&r.body, &mut out);
    }
    out
}

fn walk(v: &Value, out: &mut BTreeSet<ArtifactId>) {
    match v {
        Value::Bytes(b) => {
            if let Ok(a) = <[u8; 32]>::try_from(b.as_slice()) {
                out.insert(ArtifactId::from_bytes(a));
            }
        }
        Value::Text(t) if t.len() == 64 => {
            if let Ok(a) = t.parse::<ArtifactId>() {
                out.insert(a);
            }
        }
        Value::Array(items) => items.iter().for_each(|x| walk(x, out)),
        Value::Map(kv) => kv.iter().for_each(|(k, x)| {
            walk(k, out);
            walk(x, out);
        }),
        Value::Tag(_, x) => walk(x, out),
        _ => {}
    }
}

/// The ids that artifact `id` names, when it is a record; nothing for other
/// bytes (only the first bytes of a non-record are read).
pub fn named_by(store: &Store, id: &ArtifactId) -> Result<BTreeSet<ArtifactId>> {
    let head = store.read_range(id, 0, 8)?;
    if !looks_like_record(&head) {
        return Ok(BTreeSet::new());
    }
    Ok(named(&store.get(id)?))
}

/// Checks that publishing `adding` leaves no published record naming an
/// internal artifact. With `closure`, what they name (recursively) is
/// added instead of refused; the full set to publish is returned.
pub fn publish_set(store: &Store, adding: &[ArtifactId], closure: bool) -> Result<Vec<ArtifactId>> {
    let mut set: BTreeSet<ArtifactId> = adding.iter().copied().collect();
    let mut todo: Vec<ArtifactId> = set.iter().copied().collect();
    let mut problems = Vec::new();
    while let Some(id) = todo.pop() {
        if !store.contains(&id)? {
            continue; // set_visibility names it as missing
        }
        for n in named_by(store, &id)? {
            if set.contains(&n) || n == id {
                continue;
            }
            let internal = matches!(store.info(&n)?, Some(i) if i.visibility != Visibility::Published);
            if !internal {
                continue;
            }
            if closure {
                set.insert(n);
                todo.push(n);
            } else {
                problems.push(format!("{id} names internal artifact {n}"));
            }
        }
    }
    if !problems.is_empty() {
        return Err(Error::Refused(format!(
            "{}: publishing it would tell other domains that an internal artifact exists; publish what it names too (--closure)",
            summarize(&problems)
        )));
    }
    Ok(set.into_iter().collect())
}

/// Checks that no artifact that stays published names one of `removing`,
/// and returns `removing` with the published signature records over them
/// (a signature only vouches for its subject, so it goes with it).
/// `skip` are the domain's own manifest records (a manifest names the one
/// before it, which was published when it was current).
pub fn check_unpublish(store: &Store, removing: &[ArtifactId], skip: &BTreeSet<ArtifactId>) -> Result<Vec<ArtifactId>> {
    let mut removing: BTreeSet<ArtifactId> = removing.iter().copied().collect();
    let mut namers = Vec::new();
    for info in store.iter()? {
        let info = info?;
        if info.visibility != Visibility::Published || removing.contains(&info.id) || skip.contains(&info.id) {
            continue;
        }
        let named = named_by(store, &info.id)?;
        if !named.is_empty() {
            namers.push((info.id, named));
        }
    }
    let mut signatures = Vec::new();
    namers.retain(|(id, named)| {
        let sig_over = store
            .get(id)
            .ok()
            .and_then(|b| Record::decode(&b).ok())
            .filter(|r| r.type_name == asl_pel::keys::SIGNATURE_TYPE)
            .and_then(|r| match r.body.get("subject") {
                Some(Value::Bytes(b)) => <[u8; 32]>::try_from(b.as_slice()).ok().map(ArtifactId::from_bytes),
                _ => None,
            });
        match sig_over {
            Some(subject) if removing.contains(&subject) && named.len() == 1 => {
                signatures.push(*id);
                false
            }
            _ => true,
        }
    });
    removing.extend(signatures);
    let mut by: BTreeMap<ArtifactId, Vec<ArtifactId>> = BTreeMap::new();
    for (id, named) in &namers {
        for n in named.intersection(&removing) {
            by.entry(*n).or_default().push(*id);
        }
    }
    if by.is_empty() {
        return Ok(removing.into_iter().collect());
    }
    let problems: Vec<String> = by
        .iter()
        .map(|(n, rs)| format!("{n} is named by published record {}", rs[0]))
        .collect();
    Err(Error::Refused(format!(
        "{}: unpublish the records that name it too",
        summarize(&problems)
    )))
}

fn summarize(problems: &[String]) -> String {
    match problems.len() {
        1 => problems[0].clone(),
        n => format!("{} (and {} more)", problems[0], n - 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use asl_core::StoreOptions;
    use asl_records::{self as records, tree};

    #[test]
    fn ids_are_found_in_any_shape_and_nothing_else_is() {
        let a = ArtifactId::of(b"a");
        let b = ArtifactId::of(b"b");
        let body = Value::Map(vec![
            (Value::text("x"), Value::Bytes(a.as_bytes().to_vec())),
            (
                Value::text("y"),
                Value::Array(vec![Value::Tag(42, Box::new(Value::text(b.to_hex())))]),
            ),
            (Value::text("short"), Value::Bytes(vec![1; 31])),
            (Value::text("hexish"), Value::text("z".repeat(64))),
        ]);
        let bytes = Record::new("example/unknown", 1, body).encode().unwrap();
        assert_eq!(named(&bytes), [a, b].into_iter().collect());
        assert!(named(b"plain bytes").is_empty());
    }

    #[test]
    fn a_published_tree_may_not_name_an_internal_entry() {
        let d = tempfile::tempdir().unwrap();
        let s = StoreOptions::new().create(true).open(d.path()).unwrap();
        let f = s.put(b"secret entry").unwrap();
        let file = tree::TreeFile {
            path: "f".into(),
            size: 12,
            exec: false,
            id: f,
        };
        let t = tree::store_tree(&s, &[file]).unwrap();
        s.commit().unwrap();
        let e = publish_set(&s, &[t], false).unwrap_err().to_string();
        assert!(e.contains(&format!("names internal artifact {f}")), "{e}");
        let all = publish_set(&s, &[t], true).unwrap();
        assert_eq!(all.len(), 2);
        s.set_visibility(&all, Visibility::Published).unwrap();
        let e = check_unpublish(&s, &[f], &BTreeSet::new()).unwrap_err().to_string();
        assert!(e.contains(&format!("{f} is named by published record {t}")), "{e}");
        assert_eq!(check_unpublish(&s, &[f, t], &BTreeSet::new()).unwrap().len(), 2);
        let _ = records::get(&s as &dyn records::Source, &t).unwrap();
    }
}
