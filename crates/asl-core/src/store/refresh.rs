//! Refreshing a read-only handle: what the store's files hold now (a
//! writer's commits and checkpoints since it opened, or a replica's new
//! state) swapped in beside readers, reusing the sealed segments already
//! open.

use crate::error::{Error, Result};

use super::{open, open_snapshots, State, Store};

impl Store {
    /// [`Maintenance::refresh`](crate::Maintenance::refresh)'s body.
    pub(crate) fn refresh(&self) -> Result<bool> {
        if self.writer.is_some() {
            return Ok(false);
        }
        self.layout
            .io
            .relist()
            .map_err(|e| Error::io(format!("list the segments of {}", self.layout.root.display()), e))?;
        open::retry_gone(|| self.reload())
    }

    fn reload(&self) -> Result<bool> {
        let layout = &self.layout;
        let c = open::read_committed(layout, self.store_id, false)?;
        let at = open::cursor_after(&c.ckpt, &c.contents);
        if at == self.seen.read().at {
            return Ok(false);
        }
        let crate::snapshot::replay::Replayed {
            memtable,
            segments: mut seg_states,
            snapshots: metas,
            pins,
            ..
        } = c.replayed;
        let snapshots = open_snapshots(layout, metas)?;
        let old = self.state.read().segments.clone();
        let (segments, _) = open::open_segments(layout, &seg_states, self.store_id, None, &old)?;
        if !c.ckpt.version.has_usage_counters() {
            open::recount_usage(&memtable, &c.indexes, &segments, &mut seg_states)?;
        }
        *self.state.write() = State {
            memtable,
            indexes: c.indexes,
            segments,
            snapshots,
            pins,
        };
        *self.seen.write() = super::Seen {
            segs: seg_states,
            damage: c.damage,
            at,
        };
        // New large artifacts may have lengths the set does not hold.
        *self.large_lengths.lock() = None;
        Ok(true)
    }
}
