//! The verifying client (`asl::client`): against a real `aslctl serve` it
//! reads artifacts whole, streamed and by range; against a server that
//! lies (a flipped byte, a short body, a tree of other bytes) it returns
//! an error and never a byte the id does not prove.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;

use asl::client::{Client, ClientError};
use asl::{chunk_tree, ArtifactId, ErrorKind};

mod common;
use common::noise;
use common::server::*;

const MIB: usize = 1 << 20;

#[test]
fn artifacts_read_whole_streamed_and_by_range_from_a_real_server() {
    let s = start(&[], None);
    let dir = tempfile::tempdir().unwrap();
    let c = Client::new(&s.url, None).unwrap();
    for len in [0, 1000, MIB, 5 * MIB + 123] {
        let bytes = noise(len as u64, len);
        let f = dir.path().join(format!("a{len}"));
        std::fs::write(&f, &bytes).unwrap();
        let id: ArtifactId = put_file(&s, &f)["id"].as_str().unwrap().parse().unwrap();
        assert!(c.get(&id).unwrap() == bytes, "{len}: whole");
        let mut streamed = Vec::new();
        c.reader(&id).unwrap().read_to_end(&mut streamed).unwrap();
        assert!(streamed == bytes, "{len}: streamed");
        for (off, n) in [
            (0, 10),
            (MIB - 5, 10),
            (3 * MIB + 1, 2 * MIB),
            (len.saturating_sub(3), 100),
        ] {
            if off >= len {
                continue;
            }
            let got = c.read_range(&id, off as u64, n as u64).unwrap();
            assert!(got == bytes[off..(off + n).min(len)], "{len}: {off}+{n}");
        }
    }
    let absent = ArtifactId::from_bytes([7; 32]);
    assert_eq!(c.get(&absent).unwrap_err().kind(), ErrorKind::NotFound);
}

/// How the fake server lies about the artifact.
#[derive(Clone, Copy)]
enum Lie {
    FlipByte(usize),
    ShortBody,
    OtherTree,
}

/// A server that answers `GET /v1/artifacts/{id}` (with one range, or
/// whole) and `.../tree` for `bytes`, lying as told; one request a
/// connection.
fn liar(bytes: Vec<u8>, lie: Lie) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let cvs: Vec<u8> = {
        let mut source = bytes.clone();
        if let Lie::OtherTree = lie {
            source[0] ^= 1;
        }
        source
            .chunks(MIB)
            .enumerate()
            .flat_map(|(i, c)| chunk_tree::chunk_cv(c, i as u64, MIB))
            .collect()
    };
    let mut sent = bytes.clone();
    match lie {
        Lie::FlipByte(at) => sent[at] ^= 0x20,
        Lie::ShortBody | Lie::OtherTree => {}
    }
    let (cvs, sent) = (std::sync::Arc::new(cvs), std::sync::Arc::new(sent));
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let (cvs, sent) = (cvs.clone(), sent.clone());
            // A thread a connection: a client that stops reading one
            // answer must not hold up the next.
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut r = BufReader::new(conn.try_clone().unwrap());
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    head.push(line);
                }
                let path = head.first().and_then(|l| l.split(' ').nth(1)).unwrap_or("").to_string();
                let range = head
                    .iter()
                    .find_map(|l| l.to_ascii_lowercase().strip_prefix("range: bytes=").map(str::to_string));
                let (status, body, extra) = if path.ends_with("/tree") {
                    ("200 OK", cvs.to_vec(), String::new())
                } else {
                    let len = sent.len();
                    match range {
                        Some(r) => {
                            let (a, b) = r.trim().split_once('-').unwrap();
                            let (a, b) = (a.parse::<usize>().unwrap(), b.parse::<usize>().unwrap().min(len - 1));
                            let extra = format!("Content-Range: bytes {a}-{b}/{len}\r\n");
                            ("206 Partial Content", sent[a..=b].to_vec(), extra)
                        }
                        None => ("200 OK", sent.to_vec(), String::new()),
                    }
                };
                // A short body: the length promised, fewer bytes sent.
                let cut = match lie {
                    Lie::ShortBody => body.len() / 2,
                    _ => body.len(),
                };
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
                    body.len()
                );
                let _ = conn.write_all(&body[..cut]);
            });
        }
    });
    url
}

#[test]
fn a_server_that_lies_is_caught_and_no_wrong_byte_comes_out() {
    let bytes = noise(11, 5 * MIB + 99);
    let id = ArtifactId::from_bytes(*blake3::hash(&bytes).as_bytes());
    let flipped_at = 3 * MIB + 7;
    let c = Client::new(&liar(bytes.clone(), Lie::FlipByte(flipped_at)), None).unwrap();
    let e = c.get(&id).unwrap_err();
    assert!(matches!(e, ClientError::Corrupt { .. }), "{e}");
    assert_eq!(e.kind(), ErrorKind::Corrupt);
    // Streamed: the chunks before the flipped one come out, then an error;
    // nothing of the flipped chunk does.
    let mut r = c.reader(&id).unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    let err = loop {
        match r.read(&mut buf) {
            Ok(0) => panic!("the whole stream came out"),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => break e,
        }
    };
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    assert_eq!(got.len(), 3 * MIB, "the three chunks before the flipped one");
    assert!(got == bytes[..3 * MIB]);
    // A range in chunks the lie does not touch is fine; one in it is not.
    assert!(c.read_range(&id, 100, 5000).unwrap() == bytes[100..5100]);
    let e = c.read_range(&id, (flipped_at - 10) as u64, 20).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");

    // A small artifact (no tree): hashed whole.
    let small = noise(12, 5000);
    let sid = ArtifactId::from_bytes(*blake3::hash(&small).as_bytes());
    let c = Client::new(&liar(small, Lie::FlipByte(4999)), None).unwrap();
    assert_eq!(c.get(&sid).unwrap_err().kind(), ErrorKind::Corrupt);

    // A body cut short, and a tree of other bytes.
    let c = Client::new(&liar(bytes.clone(), Lie::ShortBody), None).unwrap();
    assert!(c.get(&id).is_err());
    let c = Client::new(&liar(bytes, Lie::OtherTree), None).unwrap();
    let e = c.get(&id).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
}
