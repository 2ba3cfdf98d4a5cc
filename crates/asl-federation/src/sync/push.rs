//! Pushing: sending what this domain publishes to a remote that takes it
//! (a directory or an `aslctl serve` with a write token).

use super::*;

/// What a push did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PushReport {
    /// Artifacts this domain publishes (with its manifest and signature).
    pub published: usize,
    /// Of those, sent (the remote lacked them).
    pub sent: usize,
    /// Their bytes.
    pub bytes: u64,
}

/// Sends remote `name` what this domain publishes and it lacks, with the
/// latest manifest and signature, so a fetch there from this domain then
/// finds everything present. Only published artifacts ever leave.
pub fn push(store: &Store, name: &str) -> Result<PushReport> {
    push_with(store, name, None)
}

/// [`push`], telling `progress` (phase `"push"`) the bytes sent of those
/// the remote lacks.
pub fn push_with(store: &Store, name: &str, progress: Option<ProgressFn<'_>>) -> Result<PushReport> {
    let r = remote::get(store, name)?;
    let (mid, sid) = publish::latest_ids(store)
        .ok_or_else(|| Error::NotFound("this domain publishes nothing (aslctl publish)".into()))?;
    let (_, m) = publish::latest(store)?.ok_or_else(|| Error::NotFound("no manifest".into()))?;
    let mut ids = m.published.clone();
    ids.push(mid);
    ids.push(sid);
    ids.extend(crate::cosign::cosignatures(store));
    let sink: Box<dyn Sink> = if r.url.starts_with("http://") || r.url.starts_with("https://") {
        #[cfg(feature = "http")]
        {
            Box::new(HttpPeer::new(&r.url, r.token.as_deref()))
        }
        #[cfg(not(feature = "http"))]
        return Err(Error::Invalid(format!(
            "{} is an HTTP remote and this build lacks feature http",
            r.url
        )));
    } else {
        let domain = crate::Domain::ensure(store)?;
        Box::new(DirSink::open(std::path::Path::new(&r.url), &domain)?)
    };
    let mut rep = PushReport {
        published: ids.len(),
        ..Default::default()
    };
    // Published since the manifest? Only what is published now leaves.
    let mut sending = Vec::new();
    for id in sink.missing(&ids)? {
        match store.info(&id)? {
            Some(i) if i.visibility == Visibility::Published => sending.push((id, i.len)),
            _ => {
                return Err(Error::Invalid(format!(
                    "{id} is in the manifest but no longer published here: publish again first"
                )))
            }
        }
    }
    let meter = Meter::new(progress, "push", sending.iter().map(|(_, len)| len).sum());
    for (id, len) in sending {
        let mut reader = meter.reader(store.open_reader(&id)?);
        sink.send(&id, len, &mut reader)?;
        rep.sent += 1;
        rep.bytes += len;
    }
    sink.finish()?;
    meter.finish();
    Ok(rep)
}
