//! Embeds every `checks/*.toml` catalog file into the binary (`OUT_DIR/catalog.rs`), so a new
//! catalog file needs no code change. The files are gzip-compressed (about a fifth of their
//! size), which keeps the static binary small; `audit::catalog` decompresses them on load.

use std::fmt::Write as _;
use std::io::Write as _;

fn main() {
    // At run time, not `env!`: a build-script binary reused from another checkout (a copied
    // target/) must still read this checkout's catalog.
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR");
    let dir = std::path::Path::new(&manifest).join("checks");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".toml"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let mut out = String::from(
        "/// The embedded catalog files: (file name, gzip-compressed text), sorted by name.\npub const CATALOG_FILES: &[(&str, &[u8])] = &[\n",
    );
    for n in &names {
        let p = dir.join(n);
        println!("cargo:rerun-if-changed={}", p.display());
        let text = std::fs::read(&p).expect("reading a catalog file");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&text).expect("compressing");
        let packed = std::path::Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR"))
            .join(format!("{n}.gz"));
        std::fs::write(&packed, gz.finish().expect("compressing")).expect("writing");
        let _ = writeln!(
            out,
            "    ({n:?}, include_bytes!({:?})),",
            packed.display().to_string()
        );
    }
    out.push_str("];\n");
    let dest = std::path::Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("catalog.rs");
    std::fs::write(dest, out).expect("writing catalog.rs");
}
