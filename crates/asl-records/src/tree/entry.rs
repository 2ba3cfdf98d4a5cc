//! A tree entry and its encoding rules: what the schema checks of a tree
//! body, apart from reading and writing trees so that the schema registry
//! needs nothing else of this module.

use crate::cbor::Value;
use asl_core::ArtifactId;

/// What a tree entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A regular file with an execute bit.
    Exec,
    /// A directory: the entry's id is a tree.
    Dir,
    /// A symbolic link: the entry's id is the artifact holding its target.
    Link,
}

impl EntryKind {
    pub(super) fn code(self) -> &'static str {
        match self {
            EntryKind::File => "f",
            EntryKind::Exec => "x",
            EntryKind::Dir => "d",
            EntryKind::Link => "l",
        }
    }
}

/// The tree record version for entries of these kinds: 2 when one is a
/// link, else 1.
pub(crate) fn version_for(mut kinds: impl Iterator<Item = EntryKind>) -> u64 {
    if kinds.any(|k| k == EntryKind::Link) {
        2
    } else {
        1
    }
}

/// One entry of a tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeEntry {
    /// The name, as bytes (not a path: no `/`, not `.` or `..`).
    pub name: Vec<u8>,
    /// File, executable file, directory or symbolic link.
    pub kind: EntryKind,
    /// A file's length; a directory's total file bytes; a link's target
    /// length.
    pub size: u64,
    /// The file's artifact id, the directory's tree id, or the artifact
    /// holding the link's target.
    pub id: ArtifactId,
}

/// Checks a name: not empty, no `/` or NUL, not `.` or `..`.
pub fn check_name(name: &[u8]) -> Result<(), String> {
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0) {
        return Err(format!("bad entry name {:?}", String::from_utf8_lossy(name)));
    }
    Ok(())
}

/// Checks a tree body's entries (the schema's custom rule): each a
/// well-formed entry, names valid and strictly increasing; links only
/// where `links` (version 2).
pub(crate) fn check_entries(v: &Value, links: bool) -> Result<(), String> {
    let Value::Array(items) = v else {
        return Err(format!("{v} is not an array"));
    };
    let mut prev: Option<&[u8]> = None;
    for (i, item) in items.iter().enumerate() {
        let (name, kind, _, _) = entry_parts(item).map_err(|e| format!("[{i}]: {e}"))?;
        if kind == EntryKind::Link && !links {
            return Err(format!("[{i}]: a version 1 tree holds no symbolic links"));
        }
        if prev.is_some_and(|p| p >= name) {
            return Err(format!("[{i}]: names not in strictly increasing byte order"));
        }
        prev = Some(name);
    }
    Ok(())
}

/// An entry's fields, checked, the name borrowed from the value.
type EntryParts<'a> = (&'a [u8], EntryKind, u64, [u8; 32]);

fn entry_parts(v: &Value) -> Result<EntryParts<'_>, String> {
    let shape = || format!("{v} is not an entry [name, kind, size, id]");
    let Value::Array(parts) = v else {
        return Err(shape());
    };
    let [Value::Bytes(name), Value::Text(kind), Value::Unsigned(size), Value::Bytes(id)] = parts.as_slice() else {
        return Err(shape());
    };
    check_name(name)?;
    let kind = match kind.as_str() {
        "f" => EntryKind::File,
        "x" => EntryKind::Exec,
        "d" => EntryKind::Dir,
        "l" => EntryKind::Link,
        other => return Err(format!("entry kind {other:?} is not f, x, d or l")),
    };
    let id: [u8; 32] = id
        .as_slice()
        .try_into()
        .map_err(|_| "an entry id is not 32 bytes".to_string())?;
    Ok((name, kind, *size, id))
}

pub(super) fn entry(v: &Value) -> Result<TreeEntry, String> {
    let (name, kind, size, id) = entry_parts(v)?;
    Ok(TreeEntry {
        name: name.to_vec(),
        kind,
        size,
        id: ArtifactId::from_bytes(id),
    })
}
