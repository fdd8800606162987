//! `cargo bench` builds the `bench` profile, which cargo derives from
//! `release`, not from `dist`; so each of `dist`'s settings is written again
//! under `bench`, and criterion's figures are of the code `dist` ships only
//! while the two copies agree. This test holds them together.

use toml::Value;

#[test]
fn bench_builds_what_dist_builds() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.toml");
    let text = std::fs::read_to_string(path).expect("the workspace's Cargo.toml");
    let manifest: Value = text.parse().expect("Cargo.toml is TOML");
    let profile = |name: &str| {
        let mut table = manifest["profile"][name]
            .as_table()
            .cloned()
            .unwrap_or_else(|| panic!("[profile.{name}] is in Cargo.toml"));
        table.remove("inherits");
        table
    };
    assert_eq!(
        manifest["profile"]["dist"]["inherits"].as_str(),
        Some("release")
    );
    assert_eq!(
        profile("dist"),
        profile("bench"),
        "[profile.dist] and [profile.bench] must set the same (bench inherits release, not dist)"
    );
}
