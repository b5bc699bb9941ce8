//! With the `regenerate-header` feature, generates the C header from src/ffi into OUT_DIR:
//! `scripts/refresh-header.sh` copies it to include/, and tests/header.rs fails when the committed
//! copy is stale. Without it (every consumer build) nothing is generated and cbindgen is not even
//! compiled: the committed include/mace_storage.h is the header.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    #[cfg(feature = "regenerate-header")]
    generate();
}

#[cfg(feature = "regenerate-header")]
fn generate() {
    use std::env;
    use std::path::PathBuf;

    let dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("mace_storage.h");
    println!("cargo:rerun-if-changed=src/ffi");
    println!("cargo:rerun-if-changed=src/log.rs");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    let version = env::var("CARGO_PKG_VERSION").unwrap();
    let part = |v: &str| env::var(v).unwrap();
    let mut config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("cbindgen.toml");
    config.after_includes = Some(format!(
        "\n#define MACE_STORAGE_VERSION \"{version}\"\n#define MACE_STORAGE_VERSION_MAJOR {}\n\
         #define MACE_STORAGE_VERSION_MINOR {}\n#define MACE_STORAGE_VERSION_PATCH {}\n",
        part("CARGO_PKG_VERSION_MAJOR"),
        part("CARGO_PKG_VERSION_MINOR"),
        part("CARGO_PKG_VERSION_PATCH"),
    ));
    cbindgen::Builder::new()
        .with_crate(&dir)
        .with_config(config)
        .generate()
        .expect("cbindgen could not generate the C header")
        .write_to_file(&out);
}
