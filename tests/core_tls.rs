//! Key fetching over real HTTPS (rustls with the ring provider, the system trust store): a local
//! `openssl s_server` with a throwaway CA. Trusted through `SSL_CERT_FILE` the keys arrive; not
//! trusted, the fetch fails with a certificate error and nothing is planned.

mod common;

use std::process::{Child, Command, Stdio};

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sh(dir: &std::path::Path, script: &str) {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn keys_over_https_need_a_trusted_certificate() {
    if common::testbed::which("openssl").is_none() {
        let msg = "SKIPPED: keys_over_https_need_a_trusted_certificate needs the openssl command";
        assert!(
            std::env::var("BOLLWERK_REQUIRE_SYSTEM_TESTS").as_deref() != Ok("1"),
            "{msg}"
        );
        eprintln!("{msg}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    sh(
        d,
        "openssl req -x509 -newkey ed25519 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=bollwerk-test-ca",
    );
    sh(
        d,
        "openssl req -newkey ed25519 -nodes -keyout srv.key -out srv.csr -subj /CN=localhost",
    );
    sh(
        d,
        "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > ext && openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem -days 2 -extfile ext",
    );
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHPci/6iPPKNm3TqnlFNu0Zy6jtqtz5kw0YO3RjFH01v alice@laptop";
    std::fs::create_dir(d.join("www")).unwrap();
    std::fs::write(d.join("www/alice.keys"), format!("{key}\n")).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _server = Server(
        Command::new("openssl")
            .args([
                "s_server",
                "-accept",
                &format!("127.0.0.1:{port}"),
                "-cert",
                "../srv.pem",
                "-key",
                "../srv.key",
                "-WWW",
                "-quiet",
            ])
            .current_dir(d.join("www"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let t = common::tree::Tree::fixture("debian12");
    let p = t.profile("site", &format!("[[users]]\nname = \"alice\"\nssh_keys_from = [\"https://localhost:{port}/alice.keys\"]\n"));
    let root = t.root().to_string_lossy().into_owned();
    let run = |trust: bool| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_bollwerk"));
        c.args(["plan", "--profile", &p, "--root", &root]);
        if trust {
            c.env("SSL_CERT_FILE", d.join("ca.pem"));
        } else {
            c.env("SSL_CERT_FILE", "/nonexistent");
        }
        c.output().unwrap()
    };
    let out = run(true);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("+{key}")));
    let out = run(false);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("certificate"), "{err}");
}
