//! The planner against the recorded hardware fixtures (`testdata/hardware/`), and its
//! invariants under random hardware (proptest).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use tiervault_model::{
    choose, plan, ApplianceConfig, Bus, ChooseError, CpuInfo, DiskInfo, HardwareDescription,
    MemoryInfo, Mismatch, Plan, Profiles, RaidLevel, Role, TierRequest, GIB,
};

fn profiles() -> Profiles {
    Profiles::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../hardware-profiles"))
        .expect("shipped profiles")
}

fn fixture(name: &str) -> HardwareDescription {
    let file: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/hardware")
        .join(format!("{name}.toml"));
    HardwareDescription::load(&file).expect("fixture parses")
}

const SINGLE: [&str; 7] = [
    "tier-5", "tier-10", "tier-15", "tier-20", "tier-30", "tier-50", "tier-100",
];

/// Every disk at most once; arrays of the profile's sizes; every planned disk has a serial.
fn check_plan(p: &Plan, hw: &HardwareDescription) {
    let mut seen = BTreeSet::new();
    let planned = p
        .arrays
        .iter()
        .flat_map(|a| a.members.iter())
        .chain(p.spares.iter().map(|s| &s.disk));
    for d in planned {
        assert!(seen.insert(d.device.clone()), "{} planned twice", d.device);
        assert!(!d.serial.is_empty(), "{} has no serial", d.device);
        let hw_disk = hw
            .disks
            .iter()
            .find(|x| x.name == d.device)
            .expect("known disk");
        assert_eq!(hw_disk.serial.as_deref(), Some(d.serial.as_str()));
    }
    for u in &p.unused {
        assert!(!seen.contains(u), "{u} both planned and unused");
    }
    assert_eq!(seen.len() + p.unused.len(), hw.disks.len());
}

#[test]
fn each_tier_fixture_plans_its_tier_and_auto_picks_it() {
    let profiles = profiles();
    for tier in SINGLE {
        let hw = fixture(tier);
        let p = choose(&profiles, &hw, &TierRequest::Named(tier.into()))
            .unwrap_or_else(|e| panic!("{tier}: {e}"));
        check_plan(&p, &hw);
        let auto = choose(&profiles, &hw, &TierRequest::Auto).expect("auto");
        assert_eq!(auto.tier, tier, "auto on the {tier} fixture");
        assert_eq!(auto, p);
    }
}

#[test]
fn tier_100_plan_shape() {
    let hw = fixture("tier-100");
    let p = choose(&profiles(), &hw, &TierRequest::Auto).expect("plan");
    let names: Vec<&str> = p.arrays.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["os0", "data0", "data1", "data2"]);
    assert_eq!(p.arrays[0].level, RaidLevel::Raid5);
    assert_eq!(p.arrays[0].members.len(), 5);
    assert!(p.arrays[1..]
        .iter()
        .all(|a| a.level == RaidLevel::Raid6 && a.members.len() == 9));
    // Bay order: the OS array takes bays 0-4, its spare bay 5; data0 bays 6-14, ...
    let bays = |i: usize| -> Vec<u32> {
        p.arrays[i]
            .members
            .iter()
            .map(|d| d.slot.expect("slot"))
            .collect()
    };
    assert_eq!(bays(0), [0, 1, 2, 3, 4]);
    assert_eq!(bays(1), (6..15).collect::<Vec<_>>());
    assert_eq!(p.spares.len(), 2);
    assert_eq!(p.spares[0].role, Role::Os);
    assert_eq!(p.spares[0].disk.slot, Some(5));
    assert_eq!(p.spares[1].arrays, ["data0", "data1", "data2"]);
    assert_eq!(p.spares[1].disk.slot, Some(33));
    assert_eq!(p.usable_tib, 114);
    assert_eq!(p.index_memory_bytes, 4 * GIB);
    assert_eq!(p.dedup_cache_bytes, 160 * GIB);
}

#[test]
fn unused_disks_are_listed() {
    let p = choose(&profiles(), &fixture("tier-5"), &TierRequest::Auto).expect("plan");
    assert_eq!(p.tier, "tier-5");
    assert_eq!(p.unused, ["sdk"], "the USB stick is left alone");
    assert_eq!(p.dedup_cache_bytes, 8 * GIB);
}

#[test]
fn a_larger_server_satisfies_a_smaller_tier() {
    let p = choose(
        &profiles(),
        &fixture("tier-20"),
        &TierRequest::Named("tier-15".into()),
    )
    .expect("tier-20 hardware meets tier-15");
    assert_eq!(p.arrays[1].members.len(), 11);
    assert_eq!(p.unused.len(), 3);
}

fn mismatch(fixture_name: &str, tier: &str) -> String {
    let e = choose(
        &profiles(),
        &fixture(fixture_name),
        &TierRequest::Named(tier.into()),
    )
    .expect_err("must not fit");
    let msg = e.to_string();
    assert!(!msg.contains('\n'), "one line: {msg}");
    msg
}

#[test]
fn one_disk_short_names_the_missing_bay() {
    assert_eq!(
        mismatch("tier-20-missing-bay9", "tier-20"),
        "tier-20 needs 15 data disks (7.2K) ≥ 2 TB, found 14: missing bay 9?"
    );
}

#[test]
fn one_disk_too_small_names_it() {
    assert_eq!(
        mismatch("tier-20-small-disk", "tier-20"),
        "tier-20 needs 15 data disks (7.2K) ≥ 2 TB, found 14: sdj (bay 9) is 1 TB, too small?"
    );
}

#[test]
fn too_little_ram() {
    assert_eq!(
        mismatch("tier-30-low-ram", "tier-30"),
        "tier-30 needs 64 GiB RAM (MemTotal ≥ 60 GiB), found 31.2 GiB"
    );
    // auto settles for the largest tier the hardware does satisfy.
    let p = choose(&profiles(), &fixture("tier-30-low-ram"), &TierRequest::Auto).expect("auto");
    assert_eq!(p.tier, "tier-15");
}

#[test]
fn a_missing_serial_is_a_mismatch() {
    assert_eq!(
        mismatch("tier-5-no-serial", "tier-5"),
        "tier-5 needs 5 data disks (7.2K) ≥ 2 TB, found 4: sdh (bay 7) has no serial number"
    );
}

#[test]
fn too_few_cores() {
    let mut hw = fixture("tier-15");
    hw.cpu.cores = 6;
    let e = plan(profiles().get("tier-15").expect("tier-15"), &hw).expect_err("cores");
    assert_eq!(e.to_string(), "tier-15 needs 12 CPU cores, found 6");
}

#[test]
fn wrong_class_is_named() {
    let mut hw = fixture("tier-50");
    for d in hw.disks.iter_mut().filter(|d| d.slot == Some(2)) {
        d.rotational = true;
    }
    assert_eq!(
        plan(profiles().get("tier-50").expect("tier-50"), &hw)
            .expect_err("class")
            .to_string(),
        "tier-50 needs 5 OS/dedup-DB disks (SSD) ≥ 480 GB, found 4: sdc (bay 2) is rotational, not SSD"
    );
}

#[test]
fn compositions_and_unknown_tiers_are_refused() {
    let hw = fixture("tier-100");
    let e = choose(&profiles(), &hw, &TierRequest::Named("tier-150".into())).expect_err("comp");
    assert!(matches!(
        e,
        ChooseError::Mismatch(Mismatch::Composition { .. })
    ));
    assert_eq!(
        e.to_string(),
        "tier-150 is a composition of several servers (tier-100 + tier-50): provision each server with its own tier"
    );
    let e = choose(&profiles(), &hw, &TierRequest::Named("tier-7".into())).expect_err("unknown");
    assert!(e
        .to_string()
        .starts_with("unknown tier \"tier-7\" (profiles: tier-5, tier-10"));
}

#[test]
fn nothing_fits_reports_the_smallest_tier() {
    let hw = HardwareDescription {
        schema: 1,
        source: None,
        cpu: CpuInfo {
            model: None,
            sockets: 1,
            cores: 2,
            threads: 2,
        },
        memory: MemoryInfo {
            total_bytes: 24 * GIB,
        },
        disks: vec![disk("vda", 274_877_906_944, true, None, Some("overlayblk"))],
    };
    let e = choose(&profiles(), &hw, &TierRequest::Auto).expect_err("a VM fits nothing");
    assert_eq!(
        e.to_string(),
        "no tier fits this hardware; the smallest: tier-5 needs 5 data disks (7.2K) ≥ 2 TB, found 0"
    );
}

#[test]
fn appliance_config_round_trips() {
    let p = choose(&profiles(), &fixture("tier-50"), &TierRequest::Auto).expect("plan");
    let c = ApplianceConfig::new(p);
    let text = c.to_toml();
    assert!(text.starts_with("version = 1\n"), "{text}");
    let back = ApplianceConfig::parse(Path::new("appliance.toml"), &text).expect("parse");
    assert_eq!(back, c);
    let e = ApplianceConfig::parse(
        Path::new("a.toml"),
        &text.replace("version = 1", "version = 9"),
    )
    .expect_err("version");
    assert!(e.to_string().contains("version: 9 is not supported"), "{e}");
}

#[test]
fn hardware_description_round_trips_and_refuses_unknown_keys() {
    let hw = fixture("tier-5");
    let text = hw.to_toml();
    assert_eq!(
        HardwareDescription::parse(Path::new("x.toml"), &text).expect("toml"),
        hw
    );
    let json = serde_json::to_string(&hw).expect("json");
    assert_eq!(
        HardwareDescription::parse(Path::new("x.json"), &json).expect("json"),
        hw
    );
    let e =
        HardwareDescription::parse(Path::new("x.toml"), &text.replace("rotational", "spinning"))
            .expect_err("unknown key");
    assert!(e.to_string().starts_with("x.toml: line "), "{e}");
    assert!(e.to_string().contains("unknown field `spinning`"), "{e}");
}

fn disk(name: &str, size: u64, rot: bool, slot: Option<u32>, serial: Option<&str>) -> DiskInfo {
    DiskInfo {
        name: name.into(),
        size_bytes: size,
        rotational: rot,
        rpm: None,
        model: None,
        serial: serial.map(Into::into),
        bus: Bus::Sata,
        slot,
    }
}

fn arb_hw() -> impl Strategy<Value = HardwareDescription> {
    const SIZES: [u64; 7] = [
        300_000_000_000,
        450_098_159_616,
        480_103_981_056,
        600_127_266_816,
        2_000_398_934_016,
        4_000_787_030_016,
        6_001_175_126_016,
    ];
    let one = (
        0..SIZES.len(),
        any::<bool>(),
        prop::option::weighted(0.9, 0u32..1000),
        any::<bool>(),
    );
    (prop::collection::vec(one, 0..40), 1u32..32, 8u64..80).prop_map(|(ds, cores, ram)| {
        HardwareDescription {
            schema: 1,
            source: None,
            cpu: CpuInfo {
                model: None,
                sockets: 1,
                cores,
                threads: cores,
            },
            memory: MemoryInfo {
                total_bytes: ram * GIB,
            },
            disks: ds
                .into_iter()
                .enumerate()
                .map(|(i, (s, rot, serial, slotted))| {
                    let serial = serial.map(|n| format!("S{n}"));
                    let slot = slotted.then_some(i as u32);
                    disk(&format!("sd{i}"), SIZES[s], rot, slot, serial.as_deref())
                })
                .collect(),
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// The planner never assigns one disk twice, never plans a disk without a serial, and
    /// fills every array of the profile with disks of the right size.
    #[test]
    fn planner_never_assigns_a_disk_twice(mut hw in arb_hw()) {
        // Serials must be unique for the "planned once" check to mean something.
        for (i, d) in hw.disks.iter_mut().enumerate() {
            if let Some(s) = &mut d.serial { *s = format!("{s}-{i}"); }
        }
        let profiles = profiles();
        for tier in SINGLE {
            let prof = profiles.get(tier).expect("tier");
            match plan(prof, &hw) {
                Ok(p) => {
                    check_plan(&p, &hw);
                    let server = prof.server().expect("server");
                    for g in &server.disk_groups {
                        for a in p.arrays.iter().filter(|a| a.role == g.role) {
                            prop_assert!(a.members.iter().all(|d| d.size_bytes >= g.size.0));
                        }
                    }
                    let wanted: u32 = server.disk_groups.iter().map(|g| g.count).sum();
                    let planned = p.arrays.iter().map(|a| a.members.len()).sum::<usize>() + p.spares.len();
                    prop_assert_eq!(planned, wanted as usize);
                }
                Err(m) => prop_assert!(m.to_string().starts_with(tier)),
            }
        }
    }
}
