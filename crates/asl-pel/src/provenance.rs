//! Lineage of artifacts through receipts: where an artifact came from
//! (which program, node and inputs, recursively) and what was made from it.
//!
//! The graph is read from receipts through the query index (`pel.out` for
//! ancestors, `pel.in` for descendants), never from the artifacts' bytes,
//! so it survives deletion: an artifact whose bytes are gone shows as
//! "content removed", and its receipts still say how it was made.
//!
//! A person's edit is a step too: a YAML overlay converted back to CBOR
//! leaves an `asl/overlay` log naming the overlay and the object it was
//! rendered from, so an edited overlay (stored by hand, made by no
//! receipt) still leads back to its base.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;

use super::receipt::{Outcome, Receipt};
use super::PelError;
use asl_core::{ArtifactId, Store};
use asl_records::cbor::Value;
use asl_records::query::{QueryIndex, OVERLAY_BASE, OVERLAY_OF, RECEIPT_IN, RECEIPT_OUT};
use asl_records::{self as records, Source};

/// One step: a receipt, as the graph shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// The receipt.
    pub receipt: ArtifactId,
    /// What it says.
    pub detail: Receipt,
}

/// An edit by hand: `overlay` was made from a rendering of `base`, and
/// `log` (an `asl/overlay` record) says what changed and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Edit {
    /// The `asl/overlay` record.
    pub log: ArtifactId,
    /// The overlay as it was converted.
    pub overlay: ArtifactId,
    /// The object it was rendered from.
    pub base: ArtifactId,
}

/// Which way to walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// What an artifact was made from.
    Ancestors,
    /// What was made from it.
    Descendants,
}

/// A lineage graph around one artifact.
#[derive(Clone, Debug)]
pub struct Graph {
    /// The artifact asked about.
    pub root: ArtifactId,
    /// Which way it was walked.
    pub direction: Direction,
    /// The steps found, by receipt id.
    pub steps: BTreeMap<ArtifactId, Step>,
    /// Edits by hand found, by log id.
    pub edits: BTreeMap<ArtifactId, Edit>,
    /// Every artifact in the graph, and whether its bytes are in the store.
    pub artifacts: BTreeMap<ArtifactId, bool>,
}

/// Walks the receipts from `root` (at most `max_steps` of them).
pub fn lineage(
    store: &Store,
    index: &QueryIndex,
    root: &ArtifactId,
    direction: Direction,
    max_steps: usize,
) -> Result<Graph, PelError> {
    let mut g = Graph {
        root: *root,
        direction,
        steps: BTreeMap::new(),
        edits: BTreeMap::new(),
        artifacts: BTreeMap::new(),
    };
    let mut queue = VecDeque::from([*root]);
    let mut seen = BTreeSet::from([*root]);
    while let Some(a) = queue.pop_front() {
        g.artifacts.insert(a, store.contains(&a)?);
        if g.steps.len() >= max_steps {
            continue;
        }
        let field = match direction {
            Direction::Ancestors => RECEIPT_OUT,
            Direction::Descendants => RECEIPT_IN,
        };
        let mut found: Vec<Step> = Vec::new();
        for (_, rid) in index.records_with(field, a.as_bytes())? {
            let Ok(r) = records::get(store as &dyn Source, &rid) else {
                continue;
            };
            let Ok(detail) = Receipt::from_record(&r) else {
                continue;
            };
            if detail.outcome != Outcome::Ok {
                continue;
            }
            found.push(Step { receipt: rid, detail });
        }
        if direction == Direction::Ancestors {
            // The same action executed in several runs made the same bytes:
            // one step (the oldest) tells how.
            found.sort_by(|x, y| x.detail.started_at.cmp(&y.detail.started_at));
            found.dedup_by(|x, y| x.detail.action_key == y.detail.action_key);
            found.truncate(1);
        } else {
            found.sort_by(|x, y| x.detail.started_at.cmp(&y.detail.started_at));
            let mut keys = BTreeSet::new();
            found.retain(|s| keys.insert(s.detail.action_key));
        }
        if found.is_empty() || direction == Direction::Descendants {
            for e in edits_at(store, index, &a, direction)? {
                let next = match direction {
                    Direction::Ancestors => e.base,
                    Direction::Descendants => e.overlay,
                };
                if seen.insert(next) {
                    queue.push_back(next);
                }
                g.edits.insert(e.log, e);
            }
        }
        for s in found {
            let next: Vec<ArtifactId> = match direction {
                Direction::Ancestors => s.detail.inputs.iter().map(|(i, _)| i.id).collect(),
                Direction::Descendants => s.detail.produced().into_iter().map(|(_, id)| id).collect(),
            };
            for n in next {
                if seen.insert(n) {
                    queue.push_back(n);
                }
            }
            g.steps.insert(s.receipt, s);
        }
    }
    // Artifacts only named by a step (the other side of it) are in the
    // graph too.
    let mut named = Vec::new();
    for s in g.steps.values() {
        named.extend(s.detail.inputs.iter().map(|(i, _)| i.id));
        named.extend(s.detail.produced().into_iter().map(|(_, id)| id));
    }
    for e in g.edits.values() {
        named.extend([e.overlay, e.base]);
    }
    for a in named {
        if let std::collections::btree_map::Entry::Vacant(e) = g.artifacts.entry(a) {
            e.insert(store.contains(&a)?);
        }
    }
    Ok(g)
}

/// [`lineage`] as `view`'s audience may see it. The owner sees the whole
/// graph, artifacts whose content was removed included. Another domain sees
/// only the steps whose receipt and every input and output it may see, the
/// edits whose log, overlay and base it may see, and only the artifacts it
/// may see; `root` itself must be one ([`asl_core::Error::NotFound`] when
/// not).
pub fn lineage_in(
    view: &asl_core::View<'_>,
    index: &QueryIndex,
    root: &ArtifactId,
    direction: Direction,
    max_steps: usize,
) -> Result<Graph, PelError> {
    if !view.contains(root)? {
        return Err(asl_core::Error::NotFound(*root).into());
    }
    let mut g = lineage(view.store(), index, root, direction, max_steps)?;
    if view.audience() == asl_core::Audience::Owner {
        return Ok(g);
    }
    let mut seen = BTreeMap::new();
    let mut visible = |a: &ArtifactId| -> asl_core::Result<bool> {
        if let Some(v) = seen.get(a) {
            return Ok(*v);
        }
        let v = view.contains(a)?;
        seen.insert(*a, v);
        Ok(v)
    };
    let mut steps = BTreeMap::new();
    for (rid, s) in std::mem::take(&mut g.steps) {
        let mut all = vec![rid];
        all.extend(s.detail.inputs.iter().map(|(i, _)| i.id));
        all.extend(s.detail.produced().into_iter().map(|(_, o)| o));
        if all
            .iter()
            .try_fold(true, |ok, a| Ok::<_, asl_core::Error>(ok && visible(a)?))?
        {
            steps.insert(rid, s);
        }
    }
    g.steps = steps;
    let mut edits = BTreeMap::new();
    for (log, e) in std::mem::take(&mut g.edits) {
        if visible(&e.log)? && visible(&e.overlay)? && visible(&e.base)? {
            edits.insert(log, e);
        }
    }
    g.edits = edits;
    let mut artifacts = BTreeMap::new();
    for (a, present) in std::mem::take(&mut g.artifacts) {
        if visible(&a)? {
            artifacts.insert(a, present);
        }
    }
    g.artifacts = artifacts;
    Ok(g)
}

/// The overlay logs that lead from `a`: as an edited overlay back to its
/// base (ancestors), or as a base on to overlays edited from it.
fn edits_at(store: &Store, index: &QueryIndex, a: &ArtifactId, direction: Direction) -> Result<Vec<Edit>, PelError> {
    let field = match direction {
        Direction::Ancestors => OVERLAY_OF,
        Direction::Descendants => OVERLAY_BASE,
    };
    let id = |r: &records::Record, k: &str| match r.body.get(k) {
        Some(Value::Bytes(b)) => b.as_slice().try_into().ok().map(ArtifactId::from_bytes),
        _ => None,
    };
    let mut out = Vec::new();
    for (_, log) in index.records_with(field, a.as_bytes())? {
        let Ok(r) = records::get(store as &dyn Source, &log) else {
            continue;
        };
        if let (Some(overlay), Some(base)) = (id(&r, "overlay"), id(&r, "base")) {
            // The log says the result differs from the base only by the
            // listed changes; an overlay that is its own base is no step.
            if overlay != base {
                out.push(Edit { log, overlay, base });
            }
        }
    }
    Ok(out)
}

fn short(id: &ArtifactId) -> String {
    id.to_string()[..12].to_string()
}

#[cfg(feature = "json")]
impl Graph {
    /// The graph as JSON: what `aslctl --json lineage` prints and
    /// `/v1/lineage` answers (one writer, so the two never differ).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        let steps: Vec<_> = self
            .steps
            .iter()
            .map(|(rid, st)| {
                let d = &st.detail;
                json!({
                    "receipt": rid.to_hex(), "node": d.node, "op": d.op, "program": d.program.to_hex(),
                    "run_id": d.run_id, "started_at": d.started_at,
                    "inputs": d.inputs.iter().map(|(i, _)| json!({"name": i.name, "id": i.id.to_hex()})).collect::<Vec<_>>(),
                    "outputs": d.produced().iter().map(|(n, o)| json!({"name": n, "id": o.to_hex()})).collect::<Vec<_>>(),
                })
            })
            .collect();
        let artifacts: serde_json::Map<_, _> = self
            .artifacts
            .iter()
            .map(|(a, present)| (a.to_hex(), json!(if *present { "present" } else { "content removed" })))
            .collect();
        let edits: Vec<_> = self
            .edits
            .values()
            .map(|e| json!({"log": e.log.to_hex(), "overlay": e.overlay.to_hex(), "base": e.base.to_hex()}))
            .collect();
        json!({
            "artifact": self.root.to_hex(),
            "direction": if self.direction == Direction::Descendants { "descendants" } else { "ancestors" },
            "steps": steps, "artifacts": artifacts, "edits": edits,
        })
    }
}

impl Graph {
    fn label(&self, id: &ArtifactId) -> String {
        if self.artifacts.get(id).copied().unwrap_or(false) {
            id.to_string()
        } else {
            format!("{id} (content removed)")
        }
    }

    /// The steps that produced `id` (ancestors) or read it (descendants).
    fn steps_at(&self, id: &ArtifactId) -> Vec<&Step> {
        self.steps
            .values()
            .filter(|s| match self.direction {
                Direction::Ancestors => s.detail.produced().iter().any(|(_, o)| o == id),
                Direction::Descendants => s.detail.inputs.iter().any(|(i, _)| i.id == *id),
            })
            .collect()
    }

    /// An indented text tree.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{}", self.label(&self.root));
        let mut shown = BTreeSet::new();
        self.text_into(&self.root, "", &mut shown, &mut out);
        out
    }

    fn text_into(&self, id: &ArtifactId, indent: &str, shown: &mut BTreeSet<ArtifactId>, out: &mut String) {
        let edits: Vec<&Edit> = self
            .edits
            .values()
            .filter(|e| match self.direction {
                Direction::Ancestors => e.overlay == *id,
                Direction::Descendants => e.base == *id,
            })
            .collect();
        let steps = self.steps_at(id);
        for (ei, e) in edits.iter().enumerate() {
            let last = ei + 1 == edits.len() && steps.is_empty();
            let (verb, next) = match self.direction {
                Direction::Ancestors => ("edited by hand from an overlay of", e.base),
                Direction::Descendants => ("rendered, edited by hand as overlay", e.overlay),
            };
            let _ = writeln!(
                out,
                "{indent}{} {verb} {} [overlay log {}]",
                if last { "└─" } else { "├─" },
                self.label(&next),
                short(&e.log)
            );
            if shown.insert(e.log) {
                let deeper = format!("{indent}{}", if last { "   " } else { "│  " });
                self.text_into(&next, &deeper, shown, out);
            }
        }
        for (si, s) in steps.iter().enumerate() {
            let last_step = si + 1 == steps.len();
            let d = &s.detail;
            let verb = match self.direction {
                Direction::Ancestors => "made by",
                Direction::Descendants => "read by",
            };
            let _ = writeln!(
                out,
                "{indent}{} {verb} node {:?} ({}) of program {} in run {} [receipt {}]",
                if last_step { "└─" } else { "├─" },
                d.node,
                d.op,
                short(&d.program),
                d.run_id,
                short(&s.receipt)
            );
            let child_indent = format!("{indent}{}", if last_step { "   " } else { "│  " });
            if !shown.insert(s.receipt) {
                let _ = writeln!(out, "{child_indent}└─ (shown above)");
                continue;
            }
            let next: Vec<(String, ArtifactId)> = match self.direction {
                Direction::Ancestors => d.inputs.iter().map(|(i, _)| (i.name.clone(), i.id)).collect(),
                Direction::Descendants => d.produced(),
            };
            for (ni, (name, a)) in next.iter().enumerate() {
                let last = ni + 1 == next.len();
                let what = match self.direction {
                    Direction::Ancestors => "input",
                    Direction::Descendants => "output",
                };
                let _ = writeln!(
                    out,
                    "{child_indent}{} {what} {name:?} = {}",
                    if last { "└─" } else { "├─" },
                    self.label(a)
                );
                let deeper = format!("{child_indent}{}", if last { "   " } else { "│  " });
                self.text_into(a, &deeper, shown, out);
            }
        }
    }

    /// A Graphviz picture: artifacts as ellipses (dashed when their bytes
    /// are gone), steps as boxes.
    pub fn to_dot(&self) -> String {
        let mut out = String::from("digraph lineage {\n  rankdir=LR;\n  node [fontname=\"monospace\", fontsize=10];\n");
        for (a, present) in &self.artifacts {
            let root = if *a == self.root { ", penwidth=2" } else { "" };
            let style = if *present { "solid" } else { "dashed" };
            let note = if *present { "" } else { "\\ncontent removed" };
            let _ = writeln!(
                out,
                "  \"a{a}\" [shape=ellipse, style={style}{root}, label=\"{}{note}\"];",
                short(a)
            );
        }
        for (rid, s) in &self.steps {
            let d = &s.detail;
            let _ = writeln!(
                out,
                "  \"r{rid}\" [shape=box, style=rounded, label=\"{}\\n{}\"];",
                escape(&d.node),
                escape(&d.op)
            );
            for (i, _) in &d.inputs {
                let _ = writeln!(out, "  \"a{}\" -> \"r{rid}\" [label=\"{}\"];", i.id, escape(&i.name));
            }
            for (name, o) in d.produced() {
                let _ = writeln!(out, "  \"r{rid}\" -> \"a{o}\" [label=\"{}\"];", escape(&name));
            }
        }
        for (lid, e) in &self.edits {
            let _ = writeln!(
                out,
                "  \"a{}\" -> \"a{}\" [style=dashed, label=\"edited (log {})\"];",
                e.base,
                e.overlay,
                short(lid)
            );
        }
        out.push_str("}\n");
        out
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}
