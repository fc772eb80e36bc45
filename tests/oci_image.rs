//! `make oci` (envoy/oci_image.py) read back by a real tool, Debian's `skopeo`:
//! the compat image's one layer holds `plugin.wasm` byte for byte, the Wasm
//! artifact's layer is the module itself, and the same module gives the same
//! digests.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::Value;

fn build_layout(out: &Path) -> String {
    let r = Command::new("python3")
        .arg(repo_root().join("envoy/oci_image.py"))
        .arg("--wasm")
        .arg(wasm_path())
        .arg("--out")
        .arg(out)
        .args(["--tag", "test"])
        .output()
        .expect("python3");
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let text = String::from_utf8(r.stdout).unwrap();
    text.lines()
        .find(|l| l.contains("(compat"))
        .and_then(|l| l.split_whitespace().last())
        .unwrap_or_else(|| panic!("no compat digest in {text}"))
        .to_string()
}

fn skopeo(args: &[&str]) -> String {
    let r = Command::new("skopeo")
        .args(args)
        .output()
        .expect("skopeo (make setup installs it)");
    assert!(
        r.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    String::from_utf8(r.stdout).unwrap()
}

/// `skopeo copy` to a `dir:` transport; the blob named by `digest` in it.
fn copied_blob(dir: &Path, digest: &str) -> Vec<u8> {
    std::fs::read(dir.join(digest.trim_start_matches("sha256:"))).unwrap()
}

#[test]
fn the_image_layout_holds_the_module_and_is_reproducible() {
    let tmp = std::env::temp_dir().join(format!("envoy-oauth2-oci-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let (a, b) = (tmp.join("a"), tmp.join("b"));
    let digest = build_layout(&a);
    assert_eq!(build_layout(&b), digest, "the same module, another digest");
    assert_eq!(
        std::fs::read(a.join("index.json")).unwrap(),
        std::fs::read(b.join("index.json")).unwrap()
    );
    let module = std::fs::read(wasm_path()).unwrap();
    let at = |tag: &str| format!("oci:{}:{tag}", a.display());

    // compat: one tar+gzip layer with plugin.wasm, annotated as such.
    let inspected: Value = serde_json::from_str(&skopeo(&["inspect", &at("test")])).unwrap();
    assert_eq!(inspected["Digest"], digest.as_str());
    let manifest: Value =
        serde_json::from_str(&skopeo(&["inspect", "--raw", &at("test")])).unwrap();
    assert_eq!(
        manifest["annotations"]["module.wasm.image/variant"],
        "compat"
    );
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    assert_eq!(
        layers[0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    let dir = tmp.join("compat-copy");
    skopeo(&["copy", &at("test"), &format!("dir:{}", dir.display())]);
    let layer = dir.join(
        layers[0]["digest"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:"),
    );
    let untar = tmp.join("untar");
    std::fs::create_dir_all(&untar).unwrap();
    let r = Command::new("tar")
        .arg("-xzf")
        .arg(&layer)
        .arg("-C")
        .arg(&untar)
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let files: Vec<_> = std::fs::read_dir(&untar)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(files, ["plugin.wasm"]);
    assert!(std::fs::read(untar.join("plugin.wasm")).unwrap() == module);

    // The Wasm artifact: the module itself is the layer.
    let manifest: Value =
        serde_json::from_str(&skopeo(&["inspect", "--raw", &at("test-wasm")])).unwrap();
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.module.wasm.config.v1+json"
    );
    let layer = &manifest["layers"][0];
    assert_eq!(
        layer["mediaType"],
        "application/vnd.module.wasm.content.layer.v1+wasm"
    );
    let dir = tmp.join("artifact-copy");
    skopeo(&["copy", &at("test-wasm"), &format!("dir:{}", dir.display())]);
    assert!(copied_blob(&dir, layer["digest"].as_str().unwrap()) == module);
    let _ = std::fs::remove_dir_all(&tmp);
}
