//! `aslctl serve`'s REAPI v2 cache over gRPC, driven by a tonic client:
//! an upload cut off mid-stream resumes where `QueryWriteStatus` says and
//! the blob reads back whole and at an offset; batches, compressed
//! resources and digests that lie; tokens and scopes as gRPC statuses.
//! (Bazel itself against this door: `tests/build_caches.rs`.)

use asl::server::reapi::proto::bytestream::{
    byte_stream_client::ByteStreamClient, QueryWriteStatusRequest, ReadRequest, WriteRequest,
};
use asl::server::reapi::proto::reapi::{
    batch_update_blobs_request, capabilities_client::CapabilitiesClient, compressor,
    content_addressable_storage_client::ContentAddressableStorageClient, BatchReadBlobsRequest,
    BatchUpdateBlobsRequest, Digest, FindMissingBlobsRequest, GetCapabilitiesRequest,
};
use futures_util::StreamExt;
use tonic::transport::Channel;

mod common;
use common::noise;
use common::server::*;

fn digest(b: &[u8]) -> Digest {
    use sha2::Digest as _;
    Digest {
        hash: hex(&sha2::Sha256::digest(b)),
        size_bytes: b.len() as i64,
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn channel(s: &Server) -> Channel {
    Channel::from_shared(s.url.clone()).unwrap().connect().await.unwrap()
}

async fn read_all(c: &mut ByteStreamClient<Channel>, name: &str, offset: i64) -> Result<Vec<u8>, tonic::Status> {
    let mut stream = c
        .read(ReadRequest {
            resource_name: name.to_string(),
            read_offset: offset,
            read_limit: 0,
        })
        .await?
        .into_inner();
    let mut out = Vec::new();
    while let Some(m) = stream.next().await {
        out.extend_from_slice(&m?.data);
    }
    Ok(out)
}

#[test]
fn a_cut_off_upload_resumes_and_reads_back_whole() {
    let s = start(&[], None);
    rt().block_on(async {
        let ch = channel(&s).await;
        let mut bs = ByteStreamClient::new(ch.clone());
        let blob = noise(7, 5 << 20);
        let d = digest(&blob);
        let upload = format!("main/uploads/5b1c-resume/blobs/{}/{}", d.hash, d.size_bytes);
        // The first attempt sends 2 MiB in four messages and ends its
        // stream without finish_write: the server keeps all of it.
        let first: Vec<WriteRequest> = (0..4)
            .map(|i| WriteRequest {
                resource_name: if i == 0 { upload.clone() } else { String::new() },
                write_offset: i * (512 << 10),
                finish_write: false,
                data: blob[(i as usize) * (512 << 10)..(i as usize + 1) * (512 << 10)].to_vec(),
            })
            .collect();
        let e = bs.write(futures_util::stream::iter(first)).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::Aborted, "{e}");
        assert_eq!(
            write_status(&mut bs, &upload).await,
            2 << 20,
            "what the ended call sent is committed"
        );
        // The second resumes there through a proxy whose connections are
        // then cut, as when a client's machine goes away mid-call.
        let proxy = CutProxy::start(&s.url).await;
        let mut second = ByteStreamClient::new(
            Channel::from_shared(proxy.url.clone())
                .unwrap()
                .connect()
                .await
                .unwrap(),
        );
        let (tx, rx) = tokio::sync::mpsc::channel::<WriteRequest>(8);
        let call = tokio::spawn(async move {
            let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
            second.write(stream).await
        });
        for i in 4..6 {
            tx.send(WriteRequest {
                resource_name: if i == 4 { upload.clone() } else { String::new() },
                write_offset: i * (512 << 10),
                finish_write: false,
                data: blob[(i as usize) * (512 << 10)..(i as usize + 1) * (512 << 10)].to_vec(),
            })
            .await
            .unwrap();
        }
        // While the server holds the call, the kept bytes are in it and
        // the status reads 0; that is how the test knows the call arrived.
        wait_for_status(&mut bs, &upload, |c| c == 0).await;
        proxy.cut();
        let committed = wait_for_status(&mut bs, &upload, |c| c > 0).await;
        assert!(
            (2 << 20..=3 << 20).contains(&committed),
            "a cut call keeps the earlier bytes and what arrived of its own: {committed}"
        );
        assert!(call.await.unwrap().is_err(), "the cut call failed at the client");
        drop(tx);
        // An offset that is not the committed size is refused.
        let wrong = WriteRequest {
            resource_name: upload.clone(),
            write_offset: 1,
            finish_write: true,
            data: blob[1..1000].to_vec(),
        };
        let e = bs.write(futures_util::stream::iter([wrong])).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
        // The rest, from there.
        let rest: Vec<WriteRequest> = blob[committed as usize..]
            .chunks(1 << 20)
            .enumerate()
            .map(|(i, c)| WriteRequest {
                resource_name: if i == 0 { upload.clone() } else { String::new() },
                write_offset: committed + (i as i64) * (1 << 20),
                finish_write: committed as usize + (i + 1) * (1 << 20) >= blob.len(),
                data: c.to_vec(),
            })
            .collect();
        let done = bs.write(futures_util::stream::iter(rest)).await.unwrap().into_inner();
        assert_eq!(done.committed_size, d.size_bytes);
        let st = bs
            .query_write_status(QueryWriteStatusRequest {
                resource_name: upload.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(st.complete);
        let name = format!("main/blobs/{}/{}", d.hash, d.size_bytes);
        assert_eq!(read_all(&mut bs, &name, 0).await.unwrap(), blob);
        assert_eq!(read_all(&mut bs, &name, 3_000_000).await.unwrap(), &blob[3_000_000..]);
        // As a zstd stream too.
        let z = read_all(
            &mut bs,
            &format!("compressed-blobs/zstd/{}/{}", d.hash, d.size_bytes),
            0,
        )
        .await
        .unwrap();
        assert_eq!(zstd_decode(&z), blob);
        // The same bytes over the HTTP door.
        assert_eq!(curl(&[&format!("{}/cas/{}", s.url, d.hash)]).1, blob);
    });
}

/// `QueryWriteStatus`'s committed size of an unfinished upload.
async fn write_status(c: &mut ByteStreamClient<Channel>, upload: &str) -> i64 {
    let st = c
        .query_write_status(QueryWriteStatusRequest {
            resource_name: upload.to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!st.complete);
    st.committed_size
}

/// Polls the committed size until it passes `ok` (30 s at most: the server
/// notices a cut connection within a few round trips, even on a loaded
/// machine).
async fn wait_for_status(c: &mut ByteStreamClient<Channel>, upload: &str, ok: impl Fn(i64) -> bool) -> i64 {
    for _ in 0..600 {
        let committed = write_status(c, upload).await;
        if ok(committed) {
            return committed;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the upload's status never reached the expected state");
}

/// A TCP forwarder to the server whose connections can all be cut at once.
struct CutProxy {
    url: String,
    tasks: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl CutProxy {
    async fn start(server_url: &str) -> CutProxy {
        let target = server_url.trim_start_matches("http://").to_string();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let tasks = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let held = tasks.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let target = target.clone();
                let pipe = tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                held.lock().unwrap().push(pipe);
            }
        });
        tasks.lock().unwrap().push(accept);
        CutProxy { url, tasks }
    }

    /// Drops every socket: both ends see the connection go.
    fn cut(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

/// A zstd stream decoded by the reference `zstd` tool.
fn zstd_decode(z: &[u8]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("blob.zst");
    std::fs::write(&f, z).unwrap();
    let o = std::process::Command::new("zstd")
        .args(["-d", "-c", "-q"])
        .arg(&f)
        .output()
        .expect("zstd (see scripts/setup)");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    o.stdout
}

/// Each call with the given bearer token.
fn bearer(token: &'static str) -> impl tonic::service::Interceptor + Clone {
    move |mut req: tonic::Request<()>| {
        req.metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        Ok(req)
    }
}

#[test]
fn batches_check_digests_and_tokens_answer_as_grpc_statuses() {
    let s = start(
        &[],
        Some(
            r#"{"tokens": [{"name": "ci", "token": "reapi-writer-0123456789", "scope": "write"},
                           {"name": "dev", "token": "reapi-reader-0123456789", "scope": "read"}]}"#,
        ),
    );
    rt().block_on(async {
        let ch = channel(&s).await;
        // No token: refused as gRPC, not as an HTTP error page.
        let e = CapabilitiesClient::new(ch.clone())
            .get_capabilities(GetCapabilitiesRequest::default())
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e}");
        let caps = |token| {
            let mut c = CapabilitiesClient::with_interceptor(ch.clone(), bearer(token));
            async move {
                c.get_capabilities(GetCapabilitiesRequest::default())
                    .await
                    .unwrap()
                    .into_inner()
            }
        };
        let reader = caps("reapi-reader-0123456789").await.cache_capabilities.unwrap();
        assert!(!reader.action_cache_update_capabilities.unwrap().update_enabled);
        let writer = caps("reapi-writer-0123456789").await.cache_capabilities.unwrap();
        assert!(writer.action_cache_update_capabilities.unwrap().update_enabled);
        assert_eq!(writer.digest_functions, [1], "SHA-256");

        let (a, b) = (noise(1, 300_000), noise(2, 200_000));
        let z = zstd_encode(&b);
        let lie = digest(b"not these bytes");
        let req = BatchUpdateBlobsRequest {
            requests: vec![
                batch_update_blobs_request::Request {
                    digest: Some(digest(&a)),
                    data: a.clone(),
                    compressor: compressor::Value::Identity as i32,
                },
                batch_update_blobs_request::Request {
                    digest: Some(digest(&b)),
                    data: z,
                    compressor: compressor::Value::Zstd as i32,
                },
                batch_update_blobs_request::Request {
                    digest: Some(Digest {
                        size_bytes: a.len() as i64,
                        ..lie.clone()
                    }),
                    data: a.clone(),
                    compressor: compressor::Value::Identity as i32,
                },
            ],
            ..Default::default()
        };
        let mut read_only =
            ContentAddressableStorageClient::with_interceptor(ch.clone(), bearer("reapi-reader-0123456789"));
        let e = read_only.batch_update_blobs(req.clone()).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e}");
        let mut cas = ContentAddressableStorageClient::with_interceptor(ch.clone(), bearer("reapi-writer-0123456789"));
        let codes: Vec<i32> = cas
            .batch_update_blobs(req)
            .await
            .unwrap()
            .into_inner()
            .responses
            .iter()
            .map(|r| r.status.as_ref().unwrap().code)
            .collect();
        assert_eq!(codes, [0, 0, tonic::Code::InvalidArgument as i32]);
        let empty = digest(b"");
        let missing = cas
            .find_missing_blobs(FindMissingBlobsRequest {
                blob_digests: vec![digest(&a), digest(&b), lie.clone(), empty.clone()],
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .missing_blob_digests;
        assert_eq!(missing.len(), 1, "the empty blob is always there");
        assert_eq!(missing[0], lie, "the lie was not stored");
        let got = read_only
            .batch_read_blobs(BatchReadBlobsRequest {
                digests: vec![digest(&a), digest(&b), lie],
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .responses;
        assert_eq!((got[0].data == a, got[1].data == b), (true, true));
        assert_eq!(got[2].status.as_ref().unwrap().code, tonic::Code::NotFound as i32);
        // A digest function other than SHA-256 is refused.
        let e = cas
            .find_missing_blobs(FindMissingBlobsRequest {
                blob_digests: vec![digest(&a)],
                digest_function: 9,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
    });
}

/// A zstd frame made by the reference `zstd` tool.
fn zstd_encode(b: &[u8]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("blob");
    std::fs::write(&f, b).unwrap();
    let o = std::process::Command::new("zstd")
        .args(["-c", "-q"])
        .arg(&f)
        .output()
        .unwrap();
    assert!(o.status.success());
    o.stdout
}
