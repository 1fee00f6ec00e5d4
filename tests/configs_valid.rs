//! Every configuration shipped in configs/ (not configs/invalid/) must validate: they are what
//! operators copy and what the benchmarks run.

use std::path::Path;

#[test]
fn every_shipped_config_validates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("configs/ exists") {
        let path = entry.expect("readable entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        if let Err(errors) = corelb::config::load(&path) {
            panic!("{} does not validate:\n{errors}", path.display());
        }
        checked.push(path.file_name().unwrap().to_string_lossy().into_owned());
    }
    checked.sort();
    // The files the README and the scripts name; a rename must update them too.
    for name in ["foobar.toml", "reference.toml", "stack.toml"] {
        assert!(
            checked.iter().any(|c| c == name),
            "configs/{name} missing; found {checked:?}"
        );
    }
}

#[test]
fn stack_config_describes_the_seed_stack() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/stack.toml");
    let cfg = corelb::config::load(&path).expect("stack.toml validates");
    let be = &cfg.backends[cfg.frontends[0].default_backend];
    let names: Vec<&str> = be.servers.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["app1", "app2"]);
    assert_eq!(cfg.frontends[0].binds[0].to_string(), "127.0.0.1:18110");
}
