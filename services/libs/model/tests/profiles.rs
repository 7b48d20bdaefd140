//! The shipped hardware profiles (`hardware-profiles/`) and the schema's error messages.

use std::path::{Path, PathBuf};

use tiervault_model::{
    index_bytes_needed, parse_profile, usable_bytes, usable_tib, Profile, ProfileError, Profiles,
    RaidLevel, Role, TABLE9, TIB,
};

fn profiles_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../hardware-profiles")
}

fn shipped() -> Profiles {
    Profiles::load_dir(&profiles_dir()).expect("the shipped profiles are valid")
}

/// Seed 001, Appendix B, Table 5: "Available Capacity" (TB as printed; TiB by the capacity rule).
const SEED_AVAILABLE: [(&str, u64); 7] = [
    ("tier-5", 5),
    ("tier-10", 12),
    ("tier-15", 18),
    ("tier-20", 23),
    ("tier-30", 36),
    ("tier-50", 58),
    ("tier-100", 114),
];

#[test]
fn every_tier_is_shipped() {
    let p = shipped();
    assert_eq!(
        p.names(),
        [
            "tier-5", "tier-10", "tier-15", "tier-20", "tier-30", "tier-50", "tier-100",
            "tier-150", "tier-200"
        ]
    );
}

#[test]
fn usable_capacity_equals_the_seeds_available_capacity() {
    let p = shipped();
    for (name, tib) in SEED_AVAILABLE {
        let server = p.get(name).and_then(Profile::server).expect(name);
        assert_eq!(usable_tib(server), tib, "{name}: computed from the arrays");
        assert_eq!(
            server.available_capacity_tib, tib,
            "{name}: as stated in the file"
        );
        assert_eq!(usable_bytes(server) / TIB, tib, "{name}");
    }
}

#[test]
fn index_budget_fits_the_index_and_the_ram() {
    for p in shipped().all() {
        let Some(s) = p.server() else { continue };
        let needed = index_bytes_needed(usable_bytes(s));
        assert!(s.memory.index_budget >= needed, "{}", p.name);
        assert!(s.memory.index_budget.0 <= s.memory.ram.0 / 4, "{}", p.name);
    }
}

#[test]
fn the_seeds_disk_counts_and_arrays() {
    let p = shipped();
    let t100 = p
        .get("tier-100")
        .and_then(Profile::server)
        .expect("tier-100");
    let data = t100
        .disk_groups
        .iter()
        .find(|g| g.role == Role::Data)
        .expect("data");
    assert_eq!((data.count, data.spares), (28, 1));
    assert_eq!(data.arrays[0].level, RaidLevel::Raid6);
    assert_eq!((data.arrays[0].members, data.arrays[0].count), (9, 3));
    assert_eq!(t100.chassis.bays, 36);
    assert_eq!(t100.power.watts, 1400);
    let t5 = p.get("tier-5").and_then(Profile::server).expect("tier-5");
    assert_eq!(
        (t5.chassis.rack_units, t5.power.psus, t5.power.watts),
        (3, 2, 900)
    );
    for prof in p.all() {
        assert!(prof.reading.is_some(), "{}: records its reading", prof.name);
    }
}

#[test]
fn compositions_sum_their_servers() {
    let p = shipped();
    let get = |n: &str| p.get(n).expect(n);
    assert_eq!(
        p.usable_bytes(get("tier-150")),
        p.usable_bytes(get("tier-100")) + p.usable_bytes(get("tier-50"))
    );
    assert_eq!(
        p.usable_bytes(get("tier-200")),
        2 * p.usable_bytes(get("tier-100"))
    );
    assert_eq!(p.servers_of(get("tier-200")).len(), 2);
}

#[test]
fn dedup_cache_file_matches_the_code() {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "kebab-case")]
    struct File {
        schema: u32,
        points: Vec<Point>,
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "kebab-case")]
    struct Point {
        source_tb: f64,
        cache_gb: f64,
    }
    let text = std::fs::read_to_string(profiles_dir().join("dedup-cache.toml")).expect("read");
    let f: File = toml::from_str(&text).expect("parse");
    assert_eq!(f.schema, 1);
    let points: Vec<(f64, f64)> = f.points.iter().map(|p| (p.source_tb, p.cache_gb)).collect();
    assert_eq!(points, TABLE9.to_vec());
}

// ---- errors: each names the file and the field ----

fn tier5_text() -> String {
    std::fs::read_to_string(profiles_dir().join("tier-5.toml")).expect("read tier-5")
}

fn parse_err(text: &str) -> (ProfileError, String) {
    let e = parse_profile(Path::new("/p/tier-5.toml"), text).expect_err("must be refused");
    let msg = e.to_string();
    assert!(msg.starts_with("/p/tier-5.toml"), "names the file: {msg}");
    assert!(!msg.contains('\n'), "one line: {msg}");
    (e, msg)
}

#[test]
fn unknown_key_is_refused_with_its_position() {
    let text = tier5_text().replace("bays = 16", "bays = 16\nbay-count = 16");
    let (e, msg) = parse_err(&text);
    assert!(matches!(e, ProfileError::Parse { .. }), "{e:?}");
    assert!(msg.contains("unknown field `bay-count`"), "{msg}");
    let line = text
        .lines()
        .position(|l| l.starts_with("bay-count"))
        .expect("line")
        + 1;
    assert!(msg.contains(&format!(":{line}:")), "{msg} (line {line})");
}

#[test]
fn raid6_of_three_disks_is_refused() {
    let text = tier5_text()
        .replace(
            "arrays = [{ level = \"raid5\", members = 4 }]",
            "arrays = [{ level = \"raid6\", members = 3 }]",
        )
        .replace("count = 5\nsize = \"2 TB\"", "count = 4\nsize = \"2 TB\"");
    let (e, msg) = parse_err(&text);
    assert!(matches!(e, ProfileError::ArrayTooSmall { .. }), "{e:?}");
    assert!(
        msg.contains("disk-group[1].arrays[0].members: a raid6 needs at least 4 disks, got 3"),
        "{msg}"
    );
}

#[test]
fn more_spares_than_disks_is_refused() {
    let text = tier5_text().replacen("spares = 1", "spares = 6", 1);
    let (e, msg) = parse_err(&text);
    assert!(matches!(e, ProfileError::SparesExceedDisks { .. }), "{e:?}");
    assert!(
        msg.contains("disk-group[0].spares: 6 hot spare(s) but the group has only 5 disk(s)"),
        "{msg}"
    );
}

#[test]
fn disk_count_must_add_up() {
    let text = tier5_text().replacen("count = 5", "count = 6", 1);
    let (_, msg) = parse_err(&text);
    assert!(msg.contains("disk-group[0].count: the arrays take 4 disk(s) and there are 1 spare(s), which is 5 but count is 6"), "{msg}");
}

#[test]
fn odd_raid10_is_refused() {
    let text = tier5_text().replacen(
        "raid10\", members = 4 }]\nspares = 1",
        "raid10\", members = 5 }]\nspares = 0",
        1,
    );
    let (_, msg) = parse_err(&text);
    assert!(msg.contains("even number of disks"), "{msg}");
}

#[test]
fn stated_capacity_must_match_the_arrays() {
    let text = tier5_text().replace("available-capacity-tib = 5", "available-capacity-tib = 6");
    let (e, msg) = parse_err(&text);
    assert!(
        matches!(
            e,
            ProfileError::Capacity {
                computed: 5,
                stated: 6,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(msg.contains("available-capacity-tib"), "{msg}");
}

#[test]
fn index_budget_rule() {
    let (e, msg) = parse_err(&tier5_text().replace("\"256 MiB\"", "\"128 MiB\""));
    assert!(
        matches!(e, ProfileError::IndexBudgetTooSmall { .. }),
        "{e:?}"
    );
    assert!(
        msg.contains("memory.index-budget: 128 MiB is less than the index needs"),
        "{msg}"
    );
    let (e, msg) = parse_err(&tier5_text().replace("\"256 MiB\"", "\"8 GiB\""));
    assert!(
        matches!(e, ProfileError::IndexBudgetTooLarge { .. }),
        "{e:?}"
    );
    assert!(
        msg.contains("more than a quarter of the RAM (16 GiB)"),
        "{msg}"
    );
}

#[test]
fn bad_size_names_the_field() {
    let (e, msg) = parse_err(&tier5_text().replace("size = \"2 TB\"", "size = \"2 TeraBytes\""));
    assert!(matches!(e, ProfileError::Parse { .. }), "{e:?}");
    assert!(msg.contains("invalid size \"2 TeraBytes\""), "{msg}");
}

#[test]
fn name_must_match_the_file() {
    let (_, msg) = parse_err(&tier5_text().replace("name = \"tier-5\"", "name = \"tier-6\""));
    assert!(
        msg.contains("name: \"tier-6\" does not match the file name"),
        "{msg}"
    );
}

#[test]
fn single_server_needs_its_tables() {
    let text = tier5_text().replace("[chassis]", "[unused-chassis]");
    let (_, msg) = parse_err(&text);
    assert!(msg.contains("unknown field `unused-chassis`"), "{msg}");
    let cut = tier5_text();
    let start = cut.find("[chassis]").expect("chassis");
    let end = cut.find("[cpu]").expect("cpu");
    let text = format!("{}{}", &cut[..start], &cut[end..]);
    let (_, msg) = parse_err(&text);
    assert!(msg.contains("chassis: missing"), "{msg}");
}

#[test]
fn composition_naming_an_unknown_tier_is_refused() {
    let comp = |parts: &str| {
        parse_profile(
            Path::new("/p/tier-150.toml"),
            &format!(
                "schema = 1\nname = \"tier-150\"\nmarketing-capacity-tb = 150\ncomposed-of = [{parts}]\n"
            ),
        )
        .expect("parses alone")
    };
    let t5 = parse_profile(Path::new("/p/tier-5.toml"), &tier5_text()).expect("tier-5");
    let e = Profiles::new(vec![t5.clone(), comp("\"tier-5\", \"tier-500\"")])
        .expect_err("unknown part");
    assert!(matches!(e, ProfileError::UnknownTier { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        "/p/tier-150.toml: composed-of[1]: unknown tier \"tier-500\" (known: tier-5)"
    );
    let e = Profiles::new(vec![t5, comp("\"tier-5\", \"tier-150\"")]).expect_err("nested");
    assert!(e.to_string().contains("is itself a composition"), "{e}");
}

#[test]
fn composition_refuses_server_keys() {
    let e = parse_profile(
        Path::new("/p/tier-150.toml"),
        "schema = 1\nname = \"tier-150\"\nmarketing-capacity-tb = 150\ncomposed-of = [\"a\", \"b\"]\n[power]\npsus = 2\nwatts = 900\n",
    )
    .expect_err("mixed");
    assert_eq!(
        e.to_string(),
        "/p/tier-150.toml: power: not allowed in a composition of servers (describe the servers in their own profiles)"
    );
}

#[test]
fn unsupported_schema() {
    let (_, msg) = parse_err(&tier5_text().replace("schema = 1", "schema = 2"));
    assert!(msg.contains("schema: version 2 is not supported"), "{msg}");
}

#[test]
fn empty_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let e = Profiles::load_dir(dir.path()).expect_err("empty");
    assert!(
        e.to_string().contains("no tier-*.toml profiles found"),
        "{e}"
    );
}
