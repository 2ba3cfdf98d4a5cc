//! `aslctl serve` over HTTPS, with certificates made by `openssl` and real
//! clients verifying them: curl and Python's requests; then mutual TLS,
//! where only a client holding a certificate of the named CA gets in.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::server::{curl, json, listening};
use common::{noise, stderr_of as err};

/// A test CA, a server certificate for 127.0.0.1 and a client certificate,
/// all signed by the CA, as PEM files in `dir`.
fn make_certificates(dir: &Path) {
    let script = r#"
set -e
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -keyout ca.key -out ca.pem -subj /CN=asl-test-ca \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
for who in server client; do
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout $who.key -out $who.csr -subj /CN=asl-test-$who
done
printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > server.ext
printf 'basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n' > client.ext
for who in server client; do
    openssl x509 -req -in $who.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
        -out $who.pem -extfile $who.ext
done
"#;
    let o = Command::new("bash")
        .args(["-c", script])
        .current_dir(dir)
        .output()
        .expect("openssl (scripts/setup installs it)");
    assert!(o.status.success(), "{}", err(&o));
}

struct Served {
    child: std::process::Child,
    url: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(dir: &Path, extra: &[&str]) -> Served {
    let (child, url) = listening(
        Command::new(common::aslctl_bin())
            .arg("--store")
            .arg(dir.join("store"))
            .args(["serve", "--listen", "127.0.0.1:0", "--quiet", "--tls-cert"])
            .arg(dir.join("server.pem"))
            .arg("--tls-key")
            .arg(dir.join("server.key"))
            .args(extra)
            .stderr(Stdio::inherit()),
    );
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    Served { child, url }
}

#[test]
fn https_is_verified_by_curl_and_python_and_mutual_tls_admits_only_the_cas_clients() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_certificates(d);
    let p = |name: &str| d.join(name).display().to_string();
    let s = serve(d, &[]);

    // curl, trusting the test CA, round-trips an artifact; trusting only the
    // system's CAs it refuses the server (exit 60: certificate problem).
    let body = noise(3, 200_000);
    std::fs::write(d.join("body"), &body).unwrap();
    let data = format!("@{}", p("body"));
    let (code, b) = curl(&[
        "--cacert",
        &p("ca.pem"),
        "-X",
        "PUT",
        "--data-binary",
        &data,
        &format!("{}/v1/artifacts", s.url),
    ]);
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&b));
    let id = json(&b)["id"].as_str().unwrap().to_string();
    let (code, got) = curl(&["--cacert", &p("ca.pem"), &format!("{}/v1/artifacts/{id}", s.url)]);
    assert_eq!((code, got.len()), (200, body.len()));
    assert_eq!(got, body);
    let o = Command::new("curl")
        .args(["-s", "-o", "/dev/null", &format!("{}/v1/health", s.url)])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(60), "an unknown CA is refused by curl");
    // Plain HTTP to the TLS port gets no HTTP answer.
    let o = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(s.url.replace("https://", "http://") + "/v1/health")
        .output()
        .unwrap();
    assert_ne!(String::from_utf8_lossy(&o.stdout), "200");
    // gRPC over TLS (`grpcs://`): the server offers h2 by ALPN, and a REAPI
    // call (an empty GetCapabilitiesRequest in its gRPC frame) is answered.
    let o = Command::new("curl")
        .args(["-s", "--http2", "--cacert", &p("ca.pem"), "-D", "-", "-o", "/dev/null"])
        .args(["-H", "content-type: application/grpc", "-H", "te: trailers"])
        .args(["--data-binary", "@-"])
        .arg(format!(
            "{}/build.bazel.remote.execution.v2.Capabilities/GetCapabilities",
            s.url
        ))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            std::io::Write::write_all(c.stdin.as_mut().unwrap(), &[0, 0, 0, 0, 0])?;
            c.wait_with_output()
        })
        .unwrap();
    let head = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(head.starts_with("HTTP/2 200"), "{head}");
    assert!(head.contains("grpc-status: 0"), "{head}");

    // Python's requests verifies the chain against the CA file.
    let script = r#"
import sys, requests
url, ca, id = sys.argv[1:4]
r = requests.get(f"{url}/v1/artifacts/{id}", verify=ca)
r.raise_for_status()
print(len(r.content))
try:
    requests.get(f"{url}/v1/health")
    print("accepted an unknown CA")
except requests.exceptions.SSLError:
    print("refused")
"#;
    let o = Command::new("python3")
        .args(["-c", script, &s.url, &p("ca.pem"), &id])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), format!("{}\nrefused\n", body.len()));

    // aslctl acting on the served store goes to the https URL its lock
    // names, and trusts the private CA only when told to.
    let cli = |ca: Option<&str>, args: &[&str]| {
        let mut c = Command::new(common::aslctl_bin());
        c.arg("--store").arg(d.join("store")).args(args).env_remove("ASL_STORE");
        match ca {
            Some(f) => c.env("ASL_SERVER_CA", f),
            None => c.env_remove("ASL_SERVER_CA"),
        };
        c.output().unwrap()
    };
    let o = cli(None, &["rm", &id]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        err(&o).contains(&s.url) && err(&o).to_lowercase().contains("certificate"),
        "{}",
        err(&o)
    );
    let o = cli(
        None,
        &["--server", &s.url, "--server-ca", &p("ca.pem"), "--json", "stat"],
    );
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(json(&o.stdout)["artifacts"].as_u64(), Some(1));
    let o = cli(Some(&p("ca.pem")), &["rm", &id]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!("removed {id}\n"),
        "{}",
        err(&o)
    );
    drop(s);

    // Mutual TLS: a client certificate of the CA gets in; none is refused in
    // the handshake (curl 56 or 35, never an HTTP answer).
    let s = serve(d, &["--tls-client-ca", &p("ca.pem")]);
    let health = format!("{}/v1/health", s.url);
    let (code, _) = curl(&[
        "--cacert",
        &p("ca.pem"),
        "--cert",
        &p("client.pem"),
        "--key",
        &p("client.key"),
        &health,
    ]);
    assert_eq!(code, 200);
    let o = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "--cacert", &p("ca.pem"), &health])
        .output()
        .unwrap();
    // 55 over HTTP/2: TLS 1.3 tells the client of the refusal at its first send.
    assert!(
        matches!(o.status.code(), Some(35 | 55 | 56)),
        "no client certificate: curl exit {:?}",
        o.status.code()
    );
    // A certificate the server signed for itself is not a client's.
    let (code, _) = curl(&[
        "--cacert",
        &p("ca.pem"),
        "--cert",
        &p("server.pem"),
        "--key",
        &p("server.key"),
        &health,
    ]);
    assert_ne!(code, 200, "a server certificate admitted as a client's");
}

/// Bad TLS settings are one clear line and exit 2, before anything listens.
#[test]
fn bad_tls_files_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_certificates(d);
    std::fs::write(d.join("empty.pem"), "").unwrap();
    for (cert, key, want) in [
        ("missing.pem", "server.key", "missing.pem"),
        ("empty.pem", "server.key", "no certificate"),
        ("server.pem", "client.key", "server.pem with"),
    ] {
        let o = Command::new(common::aslctl_bin())
            .arg("--store")
            .arg(d.join("store"))
            .args(["serve", "--listen", "127.0.0.1:0", "--tls-cert"])
            .arg(d.join(cert))
            .arg("--tls-key")
            .arg(d.join(key))
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{cert} {key}: {}", err(&o));
        assert!(err(&o).contains(want), "{cert} {key}: {}", err(&o));
        assert_eq!(err(&o).lines().count(), 1, "{}", err(&o));
    }
}
