//! Hostile input (issue 10): injection into every passwd, group and shadow field from a profile
//! and from cloud-config, a YAML anchor bomb, oversized user-data, secrets that must not reach
//! errors, plans or journals, and key fetches over HTTPS that redirect to http or send a huge
//! body. Every case ends in exit 2 (or a fetch error) with a clear message, and nothing written.

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use bollwerk::ExitStatus;
use common::tree::{Tree, fake_runner};

const HASH: &str = "$6$saltsalt$SECRETHASHabcdefghijklmnopqrstuvwxyz0123456789";
const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHPci/6iPPKNm3TqnlFNu0Zy6jtqtz5kw0YO3RjFH01v alice@laptop";

fn bollwerk(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_bollwerk"));
    c.args(args).stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// One injection: the `[[users]]`/`[[groups]]` body, the key and the line of the error.
struct Case {
    toml: String,
    key: &'static str,
    line: usize,
}

fn user_case(field: &str, value: &str, key: &'static str) -> Case {
    Case {
        toml: format!("[[users]]\nname = \"alice\"\n{field} = {value}\n"),
        key,
        line: 3,
    }
}

fn injections() -> Vec<Case> {
    let evil = "\\nevil::0:0::/root:/bin/bash";
    vec![
        // passwd: name, comment (GECOS), home, shell; group: name, members; shadow: hash.
        Case {
            toml: "[[users]]\nname = \"evil::0:0::/root:/bin/bash\"\n".into(),
            key: "users[0].name",
            line: 2,
        },
        user_case("shell", &format!("\"/bin/sh{evil}\""), "users[0].shell"),
        user_case("shell", "\"/bin/sh:x\"", "users[0].shell"),
        user_case("comment", "\"Ops: on-call\"", "users[0].comment"),
        user_case("comment", &format!("\"x{evil}\""), "users[0].comment"),
        user_case("comment", "\"a\\u001b[2Jb\"", "users[0].comment"),
        user_case("home", "\"/home/a:0:0\"", "users[0].home"),
        user_case("home", &format!("\"/home/a{evil}\""), "users[0].home"),
        user_case("home", "\"/home/../etc\"", "users[0].home"),
        user_case(
            "primary_group",
            "\"adm:x:0:alice\"",
            "users[0].primary_group",
        ),
        user_case("groups", "[\"sudo,root\"]", "users[0].groups[0]"),
        user_case("groups", "[\"sudo\\nroot\"]", "users[0].groups[0]"),
        user_case(
            "password_hash",
            &format!("\"{HASH}:0:99999\""),
            "users[0].password_hash",
        ),
        user_case(
            "password_hash",
            &format!("\"{HASH}\\nevil:x\""),
            "users[0].password_hash",
        ),
        // authorized_keys: a newline in a key's comment would add a second key.
        user_case(
            "ssh_keys",
            &format!(
                "[\"{KEY}\\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHh3c2kB0sC9s7Y0n2JqF1GJpfZ3bGm0vQm0d7mE2wVn evil\"]"
            ),
            "users[0].ssh_keys[0]",
        ),
        Case {
            toml: "[[groups]]\nname = \"wheel:x:0:alice\"\n".into(),
            key: "groups[0].name",
            line: 2,
        },
    ]
}

#[test]
fn injection_in_every_account_field_is_refused_at_validate_and_apply() {
    let t = Tree::fixture("debian12");
    let before = t.snapshot_with_mtime(true);
    for case in injections() {
        let p = t.profile("site", &case.toml);
        let out = bollwerk(&["validate", "--profile", &p], &[]);
        let (_, err) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{}\n{err}", case.toml);
        assert!(
            err.contains(&format!("site.toml:{}:", case.line)),
            "file:line:col: {err}"
        );
        assert!(
            err.contains(&format!("`{}`", case.key)),
            "key {}: {err}",
            case.key
        );
        assert!(
            !err.contains("SECRETHASH"),
            "a password hash never reaches an error: {err}"
        );
        assert!(
            !err.contains("\nevil:"),
            "the injected line is not echoed raw: {err}"
        );
        // apply refuses the same profile before touching anything.
        let (st, _) = t.run(&fake_runner(), &["apply", "--profile", &p]);
        assert_eq!(st, ExitStatus::Refused, "{}", case.toml);
        assert_eq!(t.snapshot_with_mtime(true), before, "{}", case.toml);
    }
    // The comment of the issue: `:` is refused with a hint-bearing message, a plain comment works.
    let p = t.profile(
        "site",
        "[[users]]\nname = \"alice\"\ncomment = \"Ops, on-call\"\n",
    );
    let out = bollwerk(&["validate", "--profile", &p], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
}

/// The fixture plus what first boot needs.
fn image() -> Tree {
    let t = Tree::fixture("debian12");
    t.write("usr/bin/ssh-keygen", "");
    t.write("usr/sbin/chpasswd", "");
    t.write("usr/bin/chage", "");
    t.write("bin/sh", "");
    t.write("etc/machine-id", "0123456789abcdef0123456789abcdef\n");
    t
}

fn seed(user_data: &[u8]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("meta-data"), "instance-id: iid-hostile\n").unwrap();
    std::fs::write(dir.path().join("user-data"), user_data).unwrap();
    dir
}

/// Runs `firstboot --seed` as a child process (stderr captured); every case here fails while
/// preparing the profile, before any command could run.
fn firstboot_refused(t: &Tree, user_data: &[u8]) -> String {
    let s = seed(user_data);
    let before = t.snapshot_with_mtime(true);
    let root = t.root().to_string_lossy().into_owned();
    let seed_dir = s.path().to_string_lossy().into_owned();
    let started = Instant::now();
    let out = bollwerk(&["firstboot", "--seed", &seed_dir, "--root", &root], &[]);
    let (stdout, err) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{err}");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(
        t.snapshot_with_mtime(true),
        before,
        "nothing written: {err}"
    );
    format!("{stdout}{err}")
}

#[test]
fn cloud_config_injection_is_refused_with_its_position() {
    let t = image();
    let cases = [
        (
            "shell: \"/bin/sh\\nevil::0:0::/root:/bin/bash\"",
            "users[0].shell",
        ),
        ("gecos: \"Ops: on-call\"", "users[0].gecos"),
        ("homedir: \"/home/x:0:0\"", "users[0].homedir"),
        ("groups: \"sudo\\nroot\"", "users[0].groups"),
        (
            "lock_passwd: false\n    passwd: \"$6$saltsalt$SECRETHASHabcdefghijkl:0\"",
            "users[0].passwd",
        ),
    ];
    for (field, key) in cases {
        let ud = format!(
            "#cloud-config\nwrite_files:\n  - path: /etc/app.env\n    content: TOPSECRET-TOKEN-4711\nusers:\n  - name: ops\n    {field}\n"
        );
        let out = firstboot_refused(&t, ud.as_bytes());
        assert!(out.contains("user-data:"), "{out}");
        assert!(out.contains(key), "{key}: {out}");
        assert!(
            !out.contains("TOPSECRET") && !out.contains("SECRETHASH"),
            "no secret in the error: {out}"
        );
    }
}

#[test]
fn yaml_anchor_bomb_and_oversized_user_data_are_refused() {
    let t = image();
    // The bomb: nine levels of nine aliases (9^9 nodes if expanded).
    let mut bomb = String::from("#cloud-config\na0: &a0 [\"lol\"]\n");
    for i in 1..10 {
        let refs = vec![format!("*a{}", i - 1); 9].join(",");
        bomb.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    assert!(bomb.len() < 512, "{}", bomb.len());
    let out = firstboot_refused(&t, bomb.as_bytes());
    assert!(out.contains("alias"), "{out}");
    // 2 MiB of user-data, and 2 MiB hiding in 10 KiB of gzip.
    let mut big = b"#cloud-config\n".to_vec();
    big.extend(std::iter::repeat_n(b'#', 2 << 20));
    let out = firstboot_refused(&t, &big);
    assert!(out.contains("more than the limit"), "{out}");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&big).unwrap();
    let gz = gz.finish().unwrap();
    assert!(gz.len() < 64 * 1024);
    let out = firstboot_refused(&t, &gz);
    assert!(out.contains("more than the limit"), "{out}");
    // Deep nesting and a big TOML profile.
    let deep = format!("#cloud-config\na: {}{}\n", "[".repeat(200), "]".repeat(200));
    let out = firstboot_refused(&t, deep.as_bytes());
    assert!(out.contains("nesting"), "{out}");
    let p = t.profile("site", &format!("# {}\n", "x".repeat(2 << 20)));
    let out = bollwerk(&["validate", "--profile", &p], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).1.contains("more than the limit"),
        "{}",
        text(&out).1
    );
}

#[test]
fn write_files_contents_stay_out_of_plans_and_journals() {
    let t = image();
    t.write("etc/app.env", "OLD-SECRET-0815\n");
    let ud = format!(
        "#cloud-config\nwrite_files:\n  - path: /etc/app.env\n    content: TOPSECRET-TOKEN-4711\n    permissions: '0600'\nusers:\n  - name: ops\n    groups: [sudo]\n    ssh_authorized_keys: [\"{KEY}\"]\n"
    );
    let s = seed(ud.as_bytes());
    let seed_dir = s.path().to_string_lossy().into_owned();
    let runner = fake_runner();
    let (st, out) = t.run(&runner, &["firstboot", "--seed", &seed_dir]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    assert_eq!(t.read("etc/app.env"), "TOPSECRET-TOKEN-4711");
    assert!(
        !out.contains("TOPSECRET") && !out.contains("OLD-SECRET"),
        "{out}"
    );
    // Journals, manifests and reports: nothing but the backup of the replaced file (kept for
    // rollback, 0600) holds either.
    let mut stack = vec![t.path("var/lib/bollwerk")];
    let mut seen = 0;
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let body = String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into_owned();
            if body.contains("OLD-SECRET") || body.contains("TOPSECRET") {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{}", p.display());
                assert!(!p.to_string_lossy().ends_with(".json"), "{}", p.display());
            }
            seen += 1;
        }
    }
    assert!(seen > 0);

    // The same write_files in a TOML profile: `plan` shows size and digest, never the text.
    let t = Tree::fixture("debian12");
    t.write("etc/app.env", "OLD-SECRET-0815\n");
    let p = t.profile(
        "site",
        "[firstboot]\n[[firstboot.write_files]]\npath = \"/etc/app.env\"\ncontent = \"TOPSECRET-TOKEN-4711\"\n",
    );
    let root = t.root().to_string_lossy().into_owned();
    let out = bollwerk(&["plan", "--profile", &p, "--root", &root], &[]);
    let (stdout, err) = text(&out);
    // 1: changes pending (2 when the lockout guard also speaks up: the fixture has no admin).
    assert!(matches!(out.status.code(), Some(1 | 2)), "{stdout}{err}");
    assert!(
        stdout.contains("content hidden (20 bytes, sha256 "),
        "{stdout}"
    );
    assert!(
        !format!("{stdout}{err}").contains("SECRET"),
        "{stdout}{err}"
    );
    // A bad value next to a secret: the error excerpt masks the secret line.
    let p = t.profile(
        "site",
        &format!("[[users]]\nname = \"alice\"\npassword_hash = \"{HASH}\"\nsystem = \"yes\"\n"),
    );
    let out = bollwerk(&["validate", "--profile", &p], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!text(&out).1.contains("SECRETHASH"), "{}", text(&out).1);
    let p = t.profile(
        "site",
        &format!("[[users]]\nname = \"alice\"\npassword_hash = \"{HASH}\" x\n"),
    );
    let out = bollwerk(&["validate", "--profile", &p], &[]);
    let err = text(&out).1;
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("site.toml:3:"), "{err}");
    assert!(!err.contains("SECRETHASH"), "{err}");
}

// ---- key fetching over HTTPS: a local rustls server on 127.0.0.1 ----

fn sh(dir: &Path, script: &str) {
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

/// A throwaway CA and a server certificate for localhost, made with openssl; `None` (test
/// skipped) when openssl is missing.
fn certificates(d: &Path) -> Option<()> {
    if common::testbed::which("openssl").is_none() {
        let msg = "SKIPPED: the HTTPS key-fetch tests need the openssl command";
        assert!(
            std::env::var("BOLLWERK_REQUIRE_SYSTEM_TESTS").as_deref() != Ok("1"),
            "{msg}"
        );
        eprintln!("{msg}");
        return None;
    }
    sh(
        d,
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=bollwerk-test-ca 2>/dev/null",
    );
    sh(
        d,
        "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout srv.key -out srv.csr -subj /CN=localhost 2>/dev/null",
    );
    sh(
        d,
        "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > ext && openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem -days 2 -extfile ext 2>/dev/null",
    );
    Some(())
}

/// Serves HTTPS on 127.0.0.1: every request gets `respond(stream)`. Returns the port and a
/// counter of bytes the handler managed to write.
fn tls_server(
    d: &Path,
    respond: fn(&mut dyn Write) -> std::io::Result<()>,
) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let _ = rustls::crypto::ring::default_provider().install_default();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(d.join("srv.pem"))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(d.join("srv.key")).unwrap();
    let cfg = std::sync::Arc::new(
        rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap(),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let written = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let w2 = written.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(10) {
            let Ok(stream) = stream else { continue };
            let cfg = cfg.clone();
            let w2 = w2.clone();
            std::thread::spawn(move || {
                let conn = rustls::ServerConnection::new(cfg).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, stream);
                let mut req = Vec::new();
                let mut b = [0u8; 1];
                while !req.ends_with(b"\r\n\r\n") && req.len() < 8192 {
                    match tls.read(&mut b) {
                        Ok(1) => req.push(b[0]),
                        _ => return,
                    }
                }
                let mut counting = Counting(&mut tls, &w2);
                let _ = respond(&mut counting);
                let _ = counting.flush();
            });
        }
    });
    (port, written)
}

struct Counting<'a, W: Write>(&'a mut W, &'a std::sync::atomic::AtomicUsize);

impl<W: Write> Write for Counting<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.0.write(buf)?;
        self.1.fetch_add(n, std::sync::atomic::Ordering::SeqCst);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

fn plan_with_keys_from(d: &Path, url: &str) -> (Option<i32>, String, String, Duration) {
    let t = Tree::fixture("debian12");
    let p = t.profile(
        "site",
        &format!("[[users]]\nname = \"alice\"\nssh_keys_from = [\"{url}\"]\n"),
    );
    let root = t.root().to_string_lossy().into_owned();
    let started = Instant::now();
    let ca = d.join("ca.pem");
    let out = bollwerk(
        &["plan", "--profile", &p, "--root", &root],
        &[("SSL_CERT_FILE", &ca)],
    );
    let (o, e) = text(&out);
    (out.status.code(), o, e, started.elapsed())
}

#[test]
fn key_fetch_refuses_a_redirect_from_https_to_http() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    if certificates(d).is_none() {
        return;
    }
    // A plain-http server with the key: reached only if the redirect were followed.
    let plain = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let plain_port = plain.local_addr().unwrap().port();
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let h2 = hits.clone();
    std::thread::spawn(move || {
        for s in plain.incoming().take(5) {
            let Ok(mut s) = s else { continue };
            h2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let body = format!("{KEY}\n");
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    static PLAIN: std::sync::OnceLock<u16> = std::sync::OnceLock::new();
    PLAIN.set(plain_port).unwrap();
    let (port, _) = tls_server(d, |w| {
        let port = PLAIN.get().copied().unwrap_or(9);
        write!(
            w,
            "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{port}/alice.keys\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
    });
    let (code, out, err, _) =
        plan_with_keys_from(d, &format!("https://localhost:{port}/alice.keys"));
    assert_eq!(code, Some(3), "{out}{err}");
    assert!(err.contains("refusing a redirect"), "{err}");
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert!(!out.contains(KEY));
}

#[test]
fn key_fetch_refuses_an_oversized_body_without_reading_it_all() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    if certificates(d).is_none() {
        return;
    }
    // No Content-Length, an endless body: the client stops at its 1 MiB cap.
    let (port, written) = tls_server(d, |w| {
        w.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")?;
        let line = format!("{KEY}\n").repeat(256);
        for _ in 0..100_000 {
            w.write_all(line.as_bytes())?;
        }
        Ok(())
    });
    let (code, out, err, took) =
        plan_with_keys_from(d, &format!("https://localhost:{port}/alice.keys"));
    assert_eq!(code, Some(3), "{out}{err}");
    assert!(err.contains("larger than the limit"), "{err}");
    assert!(took < Duration::from_secs(20), "{took:?}");
    let sent = written.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        sent < 32 << 20,
        "the client read {sent} bytes of a 2 GB body"
    );
    // A declared Content-Length over the cap: refused before reading the body.
    let (port, _) = tls_server(d, |w| {
        w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5000000000\r\n\r\n")?;
        std::thread::sleep(Duration::from_secs(30));
        Ok(())
    });
    let (code, _, err, took) =
        plan_with_keys_from(d, &format!("https://localhost:{port}/alice.keys"));
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("5000000000 bytes is larger"), "{err}");
    assert!(took < Duration::from_secs(10), "{took:?}");
}

#[test]
fn sshd_include_loop_in_the_root_is_an_error_not_a_hang() {
    let t = Tree::fixture("debian12");
    // Ten self-includes nested 16 deep would be 10^16 expansions without a bound.
    t.write(
        "etc/ssh/sshd_config.d/loop.conf",
        &"Include /etc/ssh/sshd_config.d/loop.conf\n".repeat(10),
    );
    let before = t.snapshot();
    let p = t.profile("site", "[ssh]\nport = 22\n");
    let started = Instant::now();
    let (st, out) = t.run(&fake_runner(), &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Refused, "{out}");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(t.snapshot(), before);
}

/// A metadata service on 127.0.0.1 that answers every request with `head` and then `body`.
fn hostile_metadata(head: &'static str, body: fn(&mut std::net::TcpStream)) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for s in listener.incoming().take(10) {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                if s.write_all(head.as_bytes()).is_ok() {
                    body(&mut s);
                }
            });
        }
    });
    url
}

#[test]
fn huge_or_slow_metadata_response_is_refused_and_nothing_written() {
    let t = image();
    let before = t.snapshot();
    let huge = hostile_metadata("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", |s| {
        let chunk = vec![b'#'; 64 * 1024];
        for _ in 0..100_000 {
            if s.write_all(&chunk).is_err() {
                return;
            }
        }
    });
    let slow = hostile_metadata("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", |s| {
        for _ in 0..1000 {
            if s.write_all(b"#").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    for (url, what) in [(huge, "larger than the limit"), (slow, "in time")] {
        let started = Instant::now();
        let (st, out) = t.run(
            &fake_runner(),
            &[
                "firstboot",
                "--datasource",
                "hetzner",
                "--metadata-url",
                &url,
            ],
        );
        assert_eq!(st, ExitStatus::Refused, "{what}: {out}");
        assert!(started.elapsed() < Duration::from_secs(30), "{what}");
        assert_eq!(t.snapshot(), before, "{what}");
    }
    // The message itself (stderr of the binary).
    let url = hostile_metadata(
        "HTTP/1.1 200 OK\r\nContent-Length: 9000000000\r\n\r\n",
        |_| std::thread::sleep(Duration::from_secs(30)),
    );
    let root = t.root().to_string_lossy().into_owned();
    let out = bollwerk(
        &[
            "firstboot",
            "--datasource",
            "hetzner",
            "--metadata-url",
            &url,
            "--root",
            &root,
        ],
        &[],
    );
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("9000000000 bytes is larger than the limit"),
        "{err}"
    );
}
