use std::path::Path;

use super::*;

const MINIMAL: &str = r#"
[daemon]
interfaces = ["eth0"]

[[vip]]
name = "web"
address = "198.18.100.100"
port = 443
farm = "web"
snat = "198.19.0.1"

[[farm]]
name = "web"

[[farm.backend]]
name = "b1"
address = "198.19.0.11:443"
"#;

fn errors(text: &str) -> Vec<ConfigError> {
    Config::parse(Path::new("t.toml"), text).expect_err("config should be rejected")
}

/// The single error of `text`, which must mention `needle`.
fn one_error(text: &str, needle: &str) -> ConfigError {
    let errs = errors(text);
    assert_eq!(errs.len(), 1, "expected one error, got {errs:#?}");
    let e = errs.into_iter().next().unwrap();
    assert!(e.to_string().contains(needle), "`{e}` does not mention `{needle}`");
    e
}

#[test]
fn every_example_config_is_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            if let Err(e) = Config::load(&path) {
                panic!("{} is invalid:\n{e}", path.display());
            }
            checked += 1;
        }
    }
    assert!(checked >= 2, "expected the example configs in {}", dir.display());
}

#[test]
fn minimal_config_gets_defaults() {
    let c = Config::parse(Path::new("t.toml"), MINIMAL).unwrap();
    assert_eq!(c.daemon.xdp_mode, XdpMode::Auto);
    assert_eq!(c.daemon.pin_path, PathBuf::from(DEFAULT_PIN_PATH));
    assert_eq!(c.daemon.metrics, None);
    assert_eq!(c.vips[0].protocol, VipProtocol::Tls);
    assert_eq!(c.vips[0].farm, 0);
    let f = &c.farms[0];
    assert_eq!(f.algorithm, Algorithm::RoundRobin);
    assert_eq!(f.persistence, default_persistence());
    assert_eq!(f.session_timeout, DEFAULT_SESSION_TIMEOUT);
    assert_eq!(f.session_capacity, DEFAULT_SESSION_CAPACITY);
    assert_eq!(f.on_backend_failure, OnBackendFailure::Rebalance);
    assert_eq!(f.backends[0].weight, 1);
    assert_eq!(f.backends[0].state, BackendState::Active);
}

#[test]
fn unknown_key_names_file_line_column_and_key() {
    let text = MINIMAL.replace("port = 443", "port = 443\nprot = 444");
    let e = one_error(&text, "unknown field `prot`");
    assert_eq!((e.path.as_path(), e.line, e.column), (Path::new("t.toml"), 9, 1));
    assert_eq!(e.key, "prot");
    assert!(e.to_string().starts_with("t.toml:9:1: prot: "), "{e}");
}

#[test]
fn vip_naming_a_missing_farm_lists_the_defined_ones() {
    let e = one_error(
        &MINIMAL.replace("farm = \"web\"", "farm = \"nope\""),
        "farm `nope` is not defined; defined farms: web",
    );
    assert_eq!(e.key, "vip[0].farm");
    assert_eq!(e.line, 9);
}

#[test]
fn unknown_words_list_the_valid_ones() {
    let e = one_error(&MINIMAL.replace("port = 443", "port = 443\nprotocol = \"udp\""), "expected `tls` or `tcp`");
    assert_eq!(e.key, "protocol");
    one_error(
        &MINIMAL.replace(
            "name = \"web\"\n\n[[farm.backend]]",
            "name = \"web\"\nalgorithm = \"fastest\"\n\n[[farm.backend]]",
        ),
        "round-robin",
    );
}

#[test]
fn every_algorithm_is_accepted() {
    for name in ["round-robin", "weighted-round-robin", "least-connections", "random", "maglev"] {
        let text = MINIMAL.replace(
            "name = \"web\"\n\n[[farm.backend]]",
            &format!("name = \"web\"\nalgorithm = \"{name}\"\n\n[[farm.backend]]"),
        );
        let config = Config::parse(Path::new("t.toml"), &text).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(config.farms[0].algorithm.name(), name);
    }
}

#[test]
fn bad_addresses_and_ports_are_rejected() {
    one_error(&MINIMAL.replace("198.18.100.100", "198.18.100"), "is not an IP address");
    one_error(&MINIMAL.replace("198.19.0.11:443", "198.19.0.11"), "is not an address and port");
    one_error(&MINIMAL.replace("198.19.0.11:443", "198.19.0.11:0"), "port 0");
    one_error(&MINIMAL.replace("port = 443", "port = 0"), "port 0");
    let e = one_error(&MINIMAL.replace("port = 443", "port = 70000"), "expected u16");
    assert_eq!(e.key, "port");
}

#[test]
fn duplicate_names_are_rejected() {
    let dup_backend = format!("{MINIMAL}\n[[farm.backend]]\nname = \"b1\"\naddress = \"198.19.0.12:443\"\n");
    let e = one_error(&dup_backend, "`b1` is used twice");
    assert_eq!(e.key, "farm[0].backend[1].name");
    let dup_farm =
        format!("{MINIMAL}\n[[farm]]\nname = \"web\"\n[[farm.backend]]\nname = \"x\"\naddress = \"198.19.0.12:443\"\n");
    one_error(&dup_farm, "`web` is used twice");
}

#[test]
fn same_listener_twice_is_rejected() {
    let two = MINIMAL.replacen("[[farm]]", "[[vip]]\nname = \"web2\"\naddress = \"198.18.100.100\"\nport = 443\nfarm = \"web\"\nsnat = \"198.19.0.1\"\n\n[[farm]]", 1);
    let e = one_error(&two, "listens on 198.18.100.100 port 443 like VIP `web`");
    assert_eq!(e.key, "vip[1].address");
}

#[test]
fn zero_weight_sum_is_rejected() {
    one_error(
        &MINIMAL.replace("address = \"198.19.0.11:443\"", "address = \"198.19.0.11:443\"\nweight = 0"),
        "add up to 0",
    );
}

#[test]
fn durations_and_capacities_are_checked() {
    let farm = |extra: &str| {
        MINIMAL.replace("name = \"web\"\n\n[[farm.backend]]", &format!("name = \"web\"\n{extra}\n\n[[farm.backend]]"))
    };
    one_error(&farm("persistence = [\"session-id\", \"session-id\"]"), "listed twice");
    one_error(&farm("persistence = [\"session-id-prefix\"]"), "none of its backends has a `session_id_prefix`");
    one_error(&farm("source_prefix_v4 = 33"), "longer than the address");
    one_error(&farm("session_timeout = \"5 minutes\""), "is not a duration");
    one_error(&farm("session_timeout = \"0s\""), "is zero");
    one_error(&farm("session_capacity = 0"), "out of range");
    one_error(&farm("session_capacity = 100000000"), "out of range");
    one_error(&farm("health = { kind = \"tcp\", interval = \"1s\", timeout = \"2s\" }"), "longer than the interval");
    one_error(&farm("health = { kind = \"tcp\", rise = 0 }"), "out of range");
    let ok = Config::parse(Path::new("t.toml"), &farm("session_timeout = \"1500ms\"")).unwrap();
    assert_eq!(ok.farms[0].session_timeout, Duration::from_millis(1500));
}

#[test]
fn vip_and_snat_of_different_families_are_rejected() {
    let e = one_error(&MINIMAL.replace("snat = \"198.19.0.1\"", "snat = \"2001:db8::1\""), "different families");
    assert_eq!(e.key, "vip[0].snat");
}

#[test]
fn backends_must_be_reachable_from_the_snat_family() {
    let text = MINIMAL
        .replace("198.18.100.100", "2001:db8:100::100")
        .replace("snat = \"198.19.0.1\"", "snat = \"2001:db8::1\"");
    one_error(&text, "cannot be reached from the IPv6 snat");
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = MINIMAL.replace("farm = \"web\"", "farm = \"nope\"").replace("198.19.0.11:443", "nowhere");
    assert_eq!(errors(&text).len(), 2);
}

#[test]
fn interfaces_are_checked() {
    one_error(&MINIMAL.replace("[\"eth0\"]", "[]"), "at least one interface");
    one_error(&MINIMAL.replace("[\"eth0\"]", "[\"eth0\", \"eth0\"]"), "listed twice");
    one_error(&MINIMAL.replace("[\"eth0\"]", "[\"a-very-long-interface-name\"]"), "not an interface name");
}

#[test]
fn parse_duration_units() {
    assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
    assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
    assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
    assert!(parse_duration("s").is_err());
    assert!(parse_duration("10").is_err());
    assert!(parse_duration("-1s").is_err());
}

#[test]
fn snat_port_range_is_checked() {
    let c = Config::parse(Path::new("t.toml"), MINIMAL).unwrap();
    assert_eq!(c.daemon.snat_ports, DEFAULT_SNAT_PORTS);
    let set =
        |v: &str| MINIMAL.replace("interfaces = [\"eth0\"]", &format!("interfaces = [\"eth0\"]\nsnat_ports = \"{v}\""));
    assert_eq!(Config::parse(Path::new("t.toml"), &set("2000-2999")).unwrap().daemon.snat_ports, (2000, 2999));
    for bad in ["0-100", "200-100", "1-70000", "1024", "a-b"] {
        let e = one_error(&set(bad), "is not a port range");
        assert_eq!(e.key, "daemon.snat_ports");
    }
}

#[test]
fn every_persistence_kind_is_accepted_with_its_settings() {
    let text = MINIMAL
        .replace(
            "name = \"web\"\n\n[[farm.backend]]",
            "name = \"web\"\npersistence = [\"session-id-prefix\", \"session-id\", \"ticket\", \"ticket-key\", \"sni\", \
             \"source-ip\"]\nsource_prefix_v4 = 24\nsource_prefix_v6 = 56\n\n[[farm.backend]]",
        )
        .replace("address = \"198.19.0.11:443\"", "address = \"198.19.0.11:443\"\nsession_id_prefix = \"b1\"");
    let config = Config::parse(Path::new("t.toml"), &text).unwrap();
    let farm = &config.farms[0];
    assert_eq!(farm.persistence.len(), 6);
    assert_eq!((farm.source_prefix_v4, farm.source_prefix_v6), (24, 56));
    assert_eq!(farm.backends[0].session_id_prefix.as_deref(), Some(&b"b1"[..]));
}

#[test]
fn session_id_prefixes_of_a_farm_have_one_length_and_differ() {
    let two = |first: &str, second: &str| {
        let one = MINIMAL.replace(
            "address = \"198.19.0.11:443\"",
            &format!("address = \"198.19.0.11:443\"\nsession_id_prefix = \"{first}\""),
        );
        format!(
            "{one}\n[[farm.backend]]\nname = \"other\"\naddress = \"198.19.0.12:443\"\nsession_id_prefix = \"{second}\"\n"
        )
    };
    one_error(&two("b1", "b22"), "the prefixes of a farm have one length");
    one_error(&two("b1", "b1"), "has the same prefix");
    one_error(&two("", "b1"), "give 1 to 16 bytes");
}
