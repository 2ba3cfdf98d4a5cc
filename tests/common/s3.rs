//! Real S3-compatible servers for the S3 tests, started on loopback:
//! moto's (`moto_server`, in memory) and s3s-fs (`s3s-fs`, files on disk,
//! so it can be killed and restarted without losing what it held); both
//! installed by `.ci/run`. Also a throttling TCP proxy, which makes an
//! upload slow enough to kill the server in the middle of it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const BUCKET: &str = "asl-test";

pub struct S3 {
    child: Option<Child>,
    /// The port clients talk to.
    pub port: u16,
    secret: &'static str,
    /// s3s-fs: its data directory and its own port, to restart it.
    fs: Option<(PathBuf, u16)>,
}

impl Drop for S3 {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_for(child: &mut Child, port: u16, what: &str) {
    for _ in 0..200 {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited: {status}");
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not start");
}

/// moto's server with the test bucket made.
pub fn moto() -> S3 {
    let port = free_port();
    let mut child = Command::new("moto_server")
        .args(["-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto_server (pip install 'moto[server]', see .ci/run)");
    wait_for(&mut child, port, "moto_server");
    // Its port may accept before the app answers (seen once in CI): the
    // bucket is made when a request succeeds, within 10 s.
    let made = (0..100).any(|_| {
        let o = Command::new("curl")
            .args(["-sf", "-X", "PUT", &format!("http://127.0.0.1:{port}/{BUCKET}")])
            .output()
            .unwrap();
        o.status.success() || {
            std::thread::sleep(Duration::from_millis(100));
            false
        }
    });
    assert!(made, "moto_server did not make the test bucket");
    S3 {
        child: Some(child),
        port,
        secret: "test",
        fs: None,
    }
}

fn spawn_s3s_fs(root: &Path, port: u16) -> Child {
    let mut child = Command::new("s3s-fs")
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--access-key", "test", "--secret-key", "testtest"])
        .arg(root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("s3s-fs (cargo install s3s-fs --features binary, see .ci/run)");
    wait_for(&mut child, port, "s3s-fs");
    child
}

/// s3s-fs keeping its objects under `root` (the test bucket is a
/// directory there), reached through a proxy passing `rate` bytes per
/// second upstream (0: unthrottled).
pub fn s3s_fs(root: &Path, rate: u64) -> S3 {
    std::fs::create_dir_all(root.join(BUCKET)).unwrap();
    let own = free_port();
    let child = spawn_s3s_fs(root, own);
    let port = if rate == 0 { own } else { proxy(own, rate) };
    S3 {
        child: Some(child),
        port,
        secret: "testtest",
        fs: Some((root.to_path_buf(), own)),
    }
}

impl S3 {
    /// Kills the server as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts a killed s3s-fs again on its port, with its objects.
    pub fn restart(&mut self) {
        let (root, port) = self.fs.clone().expect("only s3s-fs keeps its objects");
        self.child = Some(spawn_s3s_fs(&root, port));
    }

    /// The environment an S3 client needs to reach this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", self.secret.into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{}", self.port)),
            ("AWS_ALLOW_HTTP", "true".into()),
        ]
    }

    /// `aslctl --store STORE ARGS` with this server's environment.
    pub fn aslctl(&self, store: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(super::aslctl_bin());
        c.arg("--store").arg(store).args(args).env_remove("ASL_STORE");
        for (k, v) in self.env() {
            c.env(k, v);
        }
        c
    }

    /// The keys under `prefix` in the test bucket, by moto's or s3s-fs's listing.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        let o = Command::new("python3")
            .args(["-c", LIST_KEYS, BUCKET, prefix])
            .envs(self.env())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap().lines().map(String::from).collect()
    }
}

/// Lists keys with a signed request of its own (botocore, which moto
/// brings), independent of the object_store client under test.
const LIST_KEYS: &str = r#"
import os, sys, boto3
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=sys.argv[1], Prefix=sys.argv[2]):
    for o in page.get("Contents", []):
        print(o["Key"])
"#;

/// A loopback proxy to `to` that passes at most `rate` bytes per second
/// from client to server; returns its port. Runs until the test ends.
pub fn proxy(to: u16, rate: u64) -> u16 {
    proxy_with(to, rate, true)
}

/// [`proxy`] throttling the other way: server to client (downloads).
pub fn proxy_down(to: u16, rate: u64) -> u16 {
    proxy_with(to, rate, false)
}

fn proxy_with(to: u16, rate: u64, up: bool) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            std::thread::spawn(move || {
                let Ok(s) = TcpStream::connect(("127.0.0.1", to)) else {
                    return;
                };
                // `c` reads from the throttled side, `s` writes to the other.
                let (c, s) = if up { (c, s) } else { (s, c) };
                let (mut c2, mut s2) = (c.try_clone().unwrap(), s.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut s2, &mut c2);
                    let _ = c2.shutdown(std::net::Shutdown::Write);
                });
                let (mut c, mut s) = (c, s);
                let step = (rate / 20).max(1) as usize;
                let mut buf = vec![0u8; step];
                loop {
                    match c.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).is_err() {
                                break;
                            }
                            std::thread::sleep(Duration::from_millis(50));
                        }
                    }
                }
                let _ = s.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    port
}
