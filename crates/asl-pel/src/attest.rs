//! Provenance export (feature `json`): an in-toto Statement v1 with an SLSA
//! Provenance v1 predicate, wrapped in a DSSE envelope signed with the
//! store's key, and W3C PROV-JSON; and the check of such an envelope
//! against the store.
//!
//! For a run, subjects are every output of its nodes and dependencies the
//! inputs it read from outside itself; for an artifact, the receipt that
//! made it. Digests carry both SHA-256 (what in-toto tools expect) and
//! BLAKE3 (the artifact's id here).

use base64::Engine as _;
use serde_json::{json, Map, Value as J};

use super::keys::{self, PublicKey, Signer, Trust};
use super::receipt::{Receipt, Run};
use super::PelError;
use asl_core::{ArtifactId, Store};
use asl_records::query::{QueryIndex, RECEIPT_OUT};
use asl_records::{self as records, digests, Source};

/// DSSE payload type of in-toto statements.
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// The statement type.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// The predicate type.
pub const PREDICATE_TYPE: &str = "https://slsa.dev/provenance/v1";
/// The build type PEL runs are described by.
pub const BUILD_TYPE: &str = "urn:asl:pel:run:v1";

/// What an attestation is about: its receipts and the run they belong to.
pub struct Scope {
    /// The receipts.
    pub receipts: Vec<(ArtifactId, Receipt)>,
    /// The run, when the scope is one.
    pub run: Option<(ArtifactId, Run)>,
}

/// The receipts of run `run_rec`.
pub fn of_run(store: &Store, run_rec: &ArtifactId) -> Result<Scope, PelError> {
    let run = Run::from_record(&records::get(store as &dyn Source, run_rec)?)?;
    let mut receipts = Vec::new();
    for n in &run.nodes {
        if let Some(rid) = n.receipt {
            receipts.push((rid, Receipt::from_record(&records::get(store as &dyn Source, &rid)?)?));
        }
    }
    Ok(Scope {
        receipts,
        run: Some((*run_rec, run)),
    })
}

/// The receipt that made artifact `id` (the oldest OK one).
pub fn of_artifact(store: &Store, index: &QueryIndex, id: &ArtifactId) -> Result<Scope, PelError> {
    let mut found = Vec::new();
    for (_, rid) in index.records_with(RECEIPT_OUT, id.as_bytes())? {
        if let Ok(r) = records::get(store as &dyn Source, &rid) {
            if let Ok(rc) = Receipt::from_record(&r) {
                if rc.outcome == super::Outcome::Ok {
                    found.push((rid, rc));
                }
            }
        }
    }
    found.sort_by(|a, b| a.1.started_at.cmp(&b.1.started_at));
    found.truncate(1);
    if found.is_empty() {
        return Err(PelError::Attestation(format!("no receipt says how {id} was made")));
    }
    Ok(Scope {
        receipts: found,
        run: None,
    })
}

fn digest(store: &Store, id: &ArtifactId) -> Result<J, PelError> {
    let sha = digests::sha256_of_stored(store, id)?;
    Ok(json!({"sha256": digests::hex(&sha), "blake3": id.to_string()}))
}

/// The in-toto statement for `scope`.
pub fn statement(store: &Store, scope: &Scope, builder: &PublicKey) -> Result<J, PelError> {
    let mut subjects = Vec::new();
    let mut produced = std::collections::BTreeSet::new();
    for (_, r) in &scope.receipts {
        for o in &r.outputs {
            produced.insert(o.id);
            subjects.push(json!({
                "name": format!("{}/{}", r.node, o.name),
                "digest": {"sha256": digests::hex(&o.sha256), "blake3": o.id.to_string()},
            }));
        }
    }
    let mut deps = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (_, r) in &scope.receipts {
        for (i, _) in &r.inputs {
            if produced.contains(&i.id) || !seen.insert(i.id) {
                continue;
            }
            // A dependency whose bytes are gone still has an id, but its
            // SHA-256 cannot be recomputed: it is listed by BLAKE3 alone.
            let d = match digest(store, &i.id) {
                Ok(d) => d,
                Err(_) => json!({"blake3": i.id.to_string()}),
            };
            deps.push(json!({"name": format!("{}/{}", r.node, i.name), "digest": d}));
        }
    }
    let first = scope.receipts.iter().map(|(_, r)| r.started_at.clone()).min();
    let last = scope.receipts.iter().map(|(_, r)| r.finished_at.clone()).max();
    let (program, invocation) = match &scope.run {
        Some((_, run)) => (run.program, json!({"invocationId": run.run_id})),
        None => {
            let r = &scope.receipts[0].1;
            (r.program, json!({"invocationId": r.run_id}))
        }
    };
    // SLSA's metadata has no field for it: the run record is a byproduct.
    let mut byproducts: Vec<J> = scope
        .run
        .iter()
        .map(|(rid, _)| json!({"name": "run", "digest": {"blake3": rid.to_string()}, "mediaType": "application/cbor"}))
        .collect();
    byproducts.extend(scope.receipts.iter().map(|(rid, r)| {
        json!({
            "name": format!("receipt/{}", r.node),
            "digest": {"blake3": rid.to_string()},
            "mediaType": "application/cbor",
        })
    }));
    let mut metadata = invocation.as_object().cloned().unwrap_or_default();
    if let Some(f) = first {
        metadata.insert("startedOn".into(), J::String(f));
    }
    if let Some(l) = last {
        metadata.insert("finishedOn".into(), J::String(l));
    }
    let executor = scope
        .receipts
        .first()
        .map(|(_, r)| r.executor_version.clone())
        .unwrap_or_default();
    Ok(json!({
        "_type": STATEMENT_TYPE,
        "subject": subjects,
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "program": program.to_string(),
                    "nodes": scope.receipts.iter().map(|(_, r)| J::String(r.node.clone())).collect::<Vec<_>>(),
                },
                "internalParameters": {"executor": super::receipt::EXECUTOR, "executorVersion": executor},
                "resolvedDependencies": deps,
            },
            "runDetails": {
                "builder": {"id": format!("urn:asl:pel:key:{}", keys::hex(builder))},
                "metadata": J::Object(metadata),
                "byproducts": byproducts,
            },
        },
    }))
}

/// DSSE's pre-authentication encoding.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut m = format!("DSSEv1 {} {} {} ", payload_type.len(), payload_type, payload.len()).into_bytes();
    m.extend_from_slice(payload);
    m
}

/// `statement` in a DSSE envelope signed by `signer`.
pub fn envelope(statement: &J, signer: &Signer) -> J {
    let payload = serde_json::to_vec(statement).expect("JSON values serialise");
    let sig = signer.sign_bytes(&pae(PAYLOAD_TYPE, &payload));
    let b64 = base64::engine::general_purpose::STANDARD;
    json!({
        "payloadType": PAYLOAD_TYPE,
        "payload": b64.encode(&payload),
        "signatures": [{"keyid": keys::hex(&signer.public()), "sig": b64.encode(sig)}],
    })
}

/// W3C PROV-JSON for `scope`: artifacts as entities, receipts as
/// activities, the store's key as the agent.
pub fn prov(store: &Store, scope: &Scope, builder: &PublicKey) -> Result<J, PelError> {
    let mut entity = Map::new();
    let mut activity = Map::new();
    let mut used = Map::new();
    let mut generated = Map::new();
    let mut assoc = Map::new();
    let agent_id = format!("asl:key-{}", keys::hex(builder));
    let ent = |m: &mut Map<String, J>, id: &ArtifactId, label: &str, sha: Option<String>| {
        let key = format!("asl:artifact-{id}");
        let mut attrs = Map::new();
        attrs.insert("prov:label".into(), J::String(label.to_string()));
        attrs.insert("asl:present".into(), J::Bool(store.contains(id).unwrap_or(false)));
        if let Some(s) = sha {
            attrs.insert("asl:sha256".into(), J::String(s));
        }
        m.entry(key).or_insert(J::Object(attrs));
    };
    for (n, (rid, r)) in scope.receipts.iter().enumerate() {
        let act = format!("asl:receipt-{rid}");
        activity.insert(
            act.clone(),
            json!({
                "prov:startTime": r.started_at,
                "prov:endTime": r.finished_at,
                "prov:label": format!("{} ({})", r.node, r.op),
                "asl:run": r.run_id,
            }),
        );
        for (k, (i, _)) in r.inputs.iter().enumerate() {
            ent(&mut entity, &i.id, &i.name, None);
            used.insert(
                format!("_:u{n}-{k}"),
                json!({"prov:activity": act, "prov:entity": format!("asl:artifact-{}", i.id)}),
            );
        }
        for (k, o) in r.outputs.iter().enumerate() {
            ent(&mut entity, &o.id, &o.name, Some(digests::hex(&o.sha256)));
            generated.insert(
                format!("_:g{n}-{k}"),
                json!({"prov:entity": format!("asl:artifact-{}", o.id), "prov:activity": act}),
            );
        }
        assoc.insert(format!("_:w{n}"), json!({"prov:activity": act, "prov:agent": agent_id}));
    }
    let mut agent = Map::new();
    agent.insert(
        agent_id,
        json!({"prov:type": {"$": "prov:SoftwareAgent", "type": "prov:QUALIFIED_NAME"}, "prov:label": "ASL PEL executor"}),
    );
    Ok(json!({
        "prefix": {"asl": "urn:asl:"},
        "entity": entity,
        "activity": activity,
        "agent": agent,
        "used": used,
        "wasGeneratedBy": generated,
        "wasAssociatedWith": assoc,
    }))
}

/// What [`verify`] found.
#[derive(Clone, Debug, Default)]
pub struct Verified {
    /// The keys whose signatures checked.
    pub signers: Vec<PublicKey>,
    /// Subjects checked against the store.
    pub subjects: usize,
    /// Dependencies checked against the store.
    pub dependencies: usize,
    /// Everything wrong; empty when the attestation holds.
    pub problems: Vec<String>,
}

/// Checks a DSSE envelope: a signature by this store's key or by enough
/// trusted keys, an in-toto statement with an SLSA predicate, and every
/// subject and dependency present in the store with matching digests.
pub fn verify(store: &Store, own: &PublicKey, trust: &Trust, envelope: &[u8]) -> Result<Verified, PelError> {
    let bad = |m: String| PelError::Attestation(m);
    let env: J = serde_json::from_slice(envelope).map_err(|e| bad(format!("not JSON: {e}")))?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let ptype = env["payloadType"]
        .as_str()
        .ok_or_else(|| bad("no payloadType".into()))?;
    if ptype != PAYLOAD_TYPE {
        return Err(bad(format!("payloadType {ptype:?}, not {PAYLOAD_TYPE:?}")));
    }
    let payload = b64
        .decode(env["payload"].as_str().ok_or_else(|| bad("no payload".into()))?)
        .map_err(|e| bad(format!("payload is not base64: {e}")))?;
    let mut v = Verified::default();
    let message = pae(ptype, &payload);
    for s in env["signatures"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
        let (Some(kid), Some(sig)) = (s["keyid"].as_str(), s["sig"].as_str()) else {
            continue;
        };
        let (Ok(key), Ok(sig)) = (keys::parse_key(kid), b64.decode(sig)) else {
            continue;
        };
        if keys::verify_bytes(&key, &message, &sig) {
            v.signers.push(key);
        }
    }
    if v.signers.is_empty() {
        v.problems.push("no valid signature".into());
    } else if !trust.accepts(own, &v.signers) {
        v.problems.push(format!(
            "signed only by keys this store does not trust ({})",
            v.signers.iter().map(|k| keys::hex(k)).collect::<Vec<_>>().join(", ")
        ));
    }
    let st: J = serde_json::from_slice(&payload).map_err(|e| bad(format!("payload is not JSON: {e}")))?;
    if st["_type"] != STATEMENT_TYPE {
        v.problems
            .push(format!("_type is {}, not {STATEMENT_TYPE}", st["_type"]));
    }
    if st["predicateType"] != PREDICATE_TYPE {
        v.problems.push(format!(
            "predicateType is {}, not {PREDICATE_TYPE}",
            st["predicateType"]
        ));
    }
    let check = |what: &str, d: &J, v: &mut Verified| {
        let name = d["name"].as_str().unwrap_or("?").to_string();
        let Some(b3) = d["digest"]["blake3"].as_str() else {
            v.problems.push(format!("{what} {name}: no blake3 digest"));
            return;
        };
        let Ok(id) = b3.parse::<ArtifactId>() else {
            v.problems.push(format!("{what} {name}: {b3:?} is not an artifact id"));
            return;
        };
        match store.contains(&id) {
            Ok(true) => {}
            _ => {
                v.problems.push(format!("{what} {name}: {id} is not in the store"));
                return;
            }
        }
        if let Some(sha) = d["digest"]["sha256"].as_str() {
            match digests::sha256_of_stored(store, &id) {
                Ok(s) if digests::hex(&s) == sha => {}
                Ok(s) => v.problems.push(format!(
                    "{what} {name}: sha256 {sha} in the statement, {} in the store",
                    digests::hex(&s)
                )),
                Err(e) => v.problems.push(format!("{what} {name}: {e}")),
            }
        }
    };
    let subjects = st["subject"].as_array().cloned().unwrap_or_default();
    if subjects.is_empty() {
        v.problems.push("the statement has no subject".into());
    }
    for s in &subjects {
        check("subject", s, &mut v);
    }
    v.subjects = subjects.len();
    let deps = st["predicate"]["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for d in &deps {
        check("dependency", d, &mut v);
    }
    v.dependencies = deps.len();
    Ok(v)
}
