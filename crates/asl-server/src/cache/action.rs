//! What a Bazel action result holds: the blobs (`cas/` entries) it names,
//! so that eviction never takes an action's outputs while the action's
//! entry still answers. The messages are the few REAPI v2 fields this
//! needs (`build.bazel.remote.execution.v2`, field numbers as in
//! `remote_execution.proto`); a result that does not decode holds nothing.

use asl_records::digests;

#[derive(Clone, PartialEq, prost::Message)]
struct Digest {
    #[prost(string, tag = "1")]
    hash: String,
    #[prost(int64, tag = "2")]
    size_bytes: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct OutputFile {
    #[prost(message, optional, tag = "2")]
    digest: Option<Digest>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct OutputDirectory {
    #[prost(message, optional, tag = "3")]
    tree_digest: Option<Digest>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ActionResult {
    #[prost(message, repeated, tag = "2")]
    output_files: Vec<OutputFile>,
    #[prost(message, repeated, tag = "3")]
    output_directories: Vec<OutputDirectory>,
    #[prost(message, optional, tag = "6")]
    stdout_digest: Option<Digest>,
    #[prost(message, optional, tag = "8")]
    stderr_digest: Option<Digest>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct FileNode {
    #[prost(message, optional, tag = "2")]
    digest: Option<Digest>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Directory {
    #[prost(message, repeated, tag = "1")]
    files: Vec<FileNode>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Tree {
    #[prost(message, optional, tag = "1")]
    root: Option<Directory>,
    #[prost(message, repeated, tag = "2")]
    children: Vec<Directory>,
}

/// The SHA-256 digests an action result names: output files, stdout and
/// stderr, each output directory's tree and the files in it. `tree` reads
/// a tree blob by digest (`None` when the cache lacks it: its files are
/// then not known, and only the tree is held).
pub(crate) fn holds(result: &[u8], tree: impl Fn(&[u8; 32]) -> Option<Vec<u8>>) -> Vec<[u8; 32]> {
    use prost::Message;
    let Ok(r) = ActionResult::decode(result) else {
        return Vec::new();
    };
    let sha = |d: &Option<Digest>| d.as_ref().and_then(|d| digests::parse_sha256(&d.hash));
    let mut out: Vec<[u8; 32]> = r
        .output_files
        .iter()
        .filter_map(|f| sha(&f.digest))
        .chain(sha(&r.stdout_digest))
        .chain(sha(&r.stderr_digest))
        .collect();
    for dir in &r.output_directories {
        let Some(t) = sha(&dir.tree_digest) else {
            continue;
        };
        out.push(t);
        let Some(Ok(tree)) = tree(&t).map(|b| Tree::decode(b.as_slice())) else {
            continue;
        };
        for d in tree.root.iter().chain(&tree.children) {
            out.extend(d.files.iter().filter_map(|f| sha(&f.digest)));
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn digest(n: u8) -> Option<Digest> {
        Some(Digest {
            hash: digests::hex(&[n; 32]),
            size_bytes: 3,
        })
    }

    #[test]
    fn an_action_result_holds_its_files_streams_and_trees() {
        let tree = Tree {
            root: Some(Directory {
                files: vec![FileNode { digest: digest(5) }],
            }),
            children: vec![Directory {
                files: vec![FileNode { digest: digest(6) }],
            }],
        }
        .encode_to_vec();
        let result = ActionResult {
            output_files: vec![OutputFile { digest: digest(1) }, OutputFile { digest: digest(1) }],
            output_directories: vec![OutputDirectory { tree_digest: digest(4) }],
            stdout_digest: digest(2),
            stderr_digest: None,
        }
        .encode_to_vec();
        let got = holds(&result, |d| (*d == [4; 32]).then(|| tree.clone()));
        assert_eq!(got, vec![[1; 32], [2; 32], [4; 32], [5; 32], [6; 32]]);
        // Without the tree blob, the tree alone is held; junk holds nothing.
        assert_eq!(holds(&result, |_| None), vec![[1; 32], [2; 32], [4; 32]]);
        assert!(holds(b"\xff\xff not protobuf", |_| None).is_empty());
    }
}
