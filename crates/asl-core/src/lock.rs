//! Who holds a store's writer lock: a note the holder writes into `LOCK`,
//! so that a process refused the lock can say who has it — and, when the
//! holder serves the store, where to send the request instead.
//!
//! The note is advisory: it is written without fsync, rewritten by every
//! new holder, and read only while the lock is held by someone else. A note
//! that does not parse (torn by a concurrent rewrite, written by a future
//! version) is treated as no note. Format in `spec/format.md`, "LOCK".

use std::fmt;

/// The first line of a lock note, naming its version.
const MAGIC: &str = "asl-lock 1";

/// The process holding a store's writer lock, as its note describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockHolder {
    /// Its process id.
    pub pid: u32,
    /// What it runs (its program name and first argument).
    pub program: String,
    /// Where it serves the store over HTTP, when it does.
    pub url: Option<String>,
}

impl LockHolder {
    /// This process, serving at `url` when given.
    pub(crate) fn this_process(url: Option<&str>) -> LockHolder {
        let mut args = std::env::args_os();
        let name = args
            .next()
            .map(|a| {
                std::path::Path::new(&a)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            })
            .unwrap_or_default();
        let program = match args.next() {
            Some(a) => format!("{name} {}", a.to_string_lossy()),
            None => name,
        };
        LockHolder {
            pid: std::process::id(),
            program: one_line(&program),
            url: url.map(one_line),
        }
    }

    /// The note's text.
    pub(crate) fn encode(&self) -> String {
        let mut s = format!("{MAGIC}\npid {}\nprogram {}\n", self.pid, self.program);
        if let Some(u) = &self.url {
            s.push_str(&format!("url {u}\n"));
        }
        s
    }

    /// Reads a note; `None` when it is not one this version understands.
    pub(crate) fn parse(text: &str) -> Option<LockHolder> {
        let mut lines = text.lines();
        if lines.next()? != MAGIC {
            return None;
        }
        let (mut pid, mut program, mut url) = (None, None, None);
        for l in lines {
            match l.split_once(' ') {
                Some(("pid", v)) => pid = v.parse().ok(),
                Some(("program", v)) => program = Some(v.to_string()),
                Some(("url", v)) => url = Some(v.to_string()),
                // Keys a later version adds are skipped.
                _ => {}
            }
        }
        Some(LockHolder {
            pid: pid?,
            program: program?,
            url,
        })
    }
}

/// Keeps a value on its line of the note.
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

impl fmt::Display for LockHolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (pid {})", self.program, self.pid)?;
        if let Some(u) = &self.url {
            write!(f, ", serving it at {u}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_reads_back_and_garbage_is_no_note() {
        let h = LockHolder {
            pid: 42,
            program: "aslctl serve".into(),
            url: Some("http://127.0.0.1:8080".into()),
        };
        assert_eq!(LockHolder::parse(&h.encode()), Some(h.clone()));
        let plain = LockHolder { url: None, ..h };
        assert_eq!(LockHolder::parse(&plain.encode()), Some(plain));
        assert_eq!(LockHolder::parse(""), None);
        assert_eq!(LockHolder::parse("asl-lock 1\npid 4"), None, "torn: no program");
        assert_eq!(LockHolder::parse("asl-lock 2\npid 4\nprogram x\n"), None);
        let later = LockHolder::parse("asl-lock 1\npid 4\nprogram x\nhost h\n").unwrap();
        assert_eq!(later.pid, 4, "unknown keys are skipped");
        assert!(LockHolder::this_process(Some("a\nb"))
            .encode()
            .lines()
            .all(|l| l != "b"));
    }
}
