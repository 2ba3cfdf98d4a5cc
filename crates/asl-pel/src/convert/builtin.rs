//! The conversions of the graph that are builtins: HDF5 templates and
//! values, and CBOR records to and from YAML overlays.

use crate::failure::OpError;
use crate::node::{InputValue, Node, Op, Outputs};
use asl_core::{ArtifactId, Store};
use asl_records::cbor::Value;
use asl_records::{self as records, Source};

/// The largest dataset (decoded bytes) that may become YAML or JSON.
pub const LARGE_DATASET_LIMIT: u64 = 64 * 1024;

/// Runs one of the format builtins (see `ops`).
pub(crate) fn run_op(store: &Store, n: &Node, inputs: &[InputValue<'_>]) -> Result<Outputs, OpError> {
    let input = inputs[0].id;
    let out = match n.op {
        Op::Hdf5Template => {
            let index = records::get(store as &dyn Source, &input)?;
            let fallback = match index.body.get("subject") {
                Some(Value::Bytes(b)) => b.iter().take(8).map(|x| format!("{x:02x}")).collect(),
                _ => String::new(),
            };
            let t = asl_formats::template::extract(&index, &input, &fallback)?;
            records::put(store, &t)?.id
        }
        Op::Hdf5Values => values(store, &input, &n.params)?,
        Op::CborToYaml => to_yaml(store, &input)?,
        Op::YamlToCbor => return from_yaml(store, &input),
        _ => unreachable!("not a format op"),
    };
    Ok(vec![("out".to_string(), out)])
}

#[cfg(feature = "yaml")]
fn to_yaml(store: &Store, id: &ArtifactId) -> Result<ArtifactId, OpError> {
    let rec = records::get(store as &dyn Source, id)?;
    let text = asl_formats::overlay::render(&rec, id);
    Ok(store.put(text.as_bytes())?)
}

#[cfg(feature = "yaml")]
fn from_yaml(store: &Store, id: &ArtifactId) -> Result<Outputs, OpError> {
    let a = asl_formats::overlay::apply(store, id)?;
    Ok(vec![("out".into(), a.result), ("log".into(), a.log)])
}

#[cfg(not(feature = "yaml"))]
fn to_yaml(_: &Store, _: &ArtifactId) -> Result<ArtifactId, OpError> {
    Err("cbor.to_yaml needs the library built with feature `yaml`".into())
}

#[cfg(not(feature = "yaml"))]
fn from_yaml(_: &Store, _: &ArtifactId) -> Result<Outputs, OpError> {
    Err("yaml.to_cbor needs the library built with feature `yaml`".into())
}

#[cfg(all(feature = "h5read", feature = "json"))]
fn values(store: &Store, index: &ArtifactId, p: &Value) -> Result<ArtifactId, OpError> {
    use asl_formats::h5read;
    let path = match p.get("path") {
        Some(Value::Text(t)) => t.clone(),
        _ => return Err("hdf5.values needs `path`".into()),
    };
    let limit = match p.get("limit") {
        Some(Value::Unsigned(n)) => *n,
        _ => LARGE_DATASET_LIMIT,
    };
    let rec = records::get(store as &dyn Source, index)?;
    let a = h5read::read(store, &rec, &path, &[])?;
    if a.data.len() as u64 > limit {
        return Err(OpError::Node(format!(
            "rule large-dataset: {path} is {} bytes, over the {limit}-byte limit",
            a.data.len()
        )));
    }
    let data: Vec<serde_json::Value> = (0..a.len())
        .map(|i| match a.element(i) {
            h5read::Element::Int(v) => v.into(),
            h5read::Element::Uint(v) => v.into(),
            h5read::Element::Float(v) => serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, Into::into),
            h5read::Element::Bool(v) => v.into(),
        })
        .collect();
    let doc = serde_json::json!({
        "artifact": match rec.body.get("subject") {
            Some(Value::Bytes(b)) => b.iter().map(|x| format!("{x:02x}")).collect::<String>(),
            _ => String::new(),
        },
        "path": a.path, "dtype": a.dtype, "shape": a.shape, "data": data,
    });
    let text = match p.get("format") {
        Some(Value::Text(f)) if f == "yaml" => {
            // JSON's flow style is YAML; one key per line reads better.
            let mut s = String::new();
            if let serde_json::Value::Object(m) = &doc {
                for (k, v) in m {
                    s.push_str(&format!("{k}: {v}\n"));
                }
            }
            s
        }
        _ => {
            let mut s = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
            s.push('\n');
            s
        }
    };
    Ok(store.put(text.as_bytes())?)
}

#[cfg(not(all(feature = "h5read", feature = "json")))]
fn values(_: &Store, _: &ArtifactId, _: &Value) -> Result<ArtifactId, OpError> {
    Err("hdf5.values needs the library built with features `h5read` and `json`".into())
}
