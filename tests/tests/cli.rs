//! The `tether` binary's configuration checking and its errors, as a user runs
//! them. No privileges needed.

use std::{path::PathBuf, process::Command};

use tether_tests::tether::tether_bin;

fn example_configs() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no example configs in {}", dir.display());
    files
}

fn check_config(text: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(tether_bin()).arg("check-config").arg(&path).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).replace(&path.display().to_string(), "bad.toml");
    (out.status.success(), stderr)
}

#[test]
fn every_example_config_passes_check_config() {
    let out = Command::new(tether_bin()).arg("check-config").args(example_configs()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "check-config failed:\n{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.matches(": ok").count(), example_configs().len(), "{stdout}");
}

#[test]
fn unknown_key_fails_with_file_line_and_key() {
    let base = std::fs::read_to_string(&example_configs()[0]).unwrap();
    let text = base.replacen("[daemon]\n", "[daemon]\nxdp_mod = \"native\"\n", 1);
    let line = text.lines().position(|l| l.starts_with("xdp_mod")).unwrap() + 1;
    let (ok, stderr) = check_config(&text);
    assert!(!ok, "an unknown key must fail");
    assert!(stderr.contains(&format!("bad.toml:{line}:1: xdp_mod: unknown field `xdp_mod`")), "{stderr}");
}

#[test]
fn vip_with_missing_farm_fails_with_file_line_and_key() {
    let base = std::fs::read_to_string(&example_configs()[0]).unwrap();
    let text = base.replacen("farm = \"", "farm = \"missing-", 1);
    let line = text.lines().position(|l| l.starts_with("farm = \"missing-")).unwrap() + 1;
    let (ok, stderr) = check_config(&text);
    assert!(!ok, "a VIP naming a missing farm must fail");
    assert!(stderr.contains(&format!("bad.toml:{line}:8: vip[0].farm: farm `missing-")), "{stderr}");
}

#[test]
fn status_without_a_daemon_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let base = std::fs::read_to_string(&example_configs()[0]).unwrap();
    let config = dir.path().join("t.toml");
    let pin = dir.path().join("pins");
    let socket = dir.path().join("control.sock");
    let mut text = base.replace("/sys/fs/bpf/tether", &pin.display().to_string());
    text = if text.contains("control_socket") {
        text.replace("/run/tether.sock", &socket.display().to_string())
    } else {
        text.replacen("[daemon]\n", &format!("[daemon]\ncontrol_socket = \"{}\"\n", socket.display()), 1)
    };
    std::fs::write(&config, text).unwrap();
    for args in [&["status"][..], &["backend", "drain", "web", "b0"][..]] {
        let out = Command::new(tether_bin()).args(args).arg("--config").arg(&config).output().unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("cannot reach the tether daemon at {}", socket.display()))
                && stderr.contains("is `tether run` running"),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn the_systemd_unit_runs_commands_tether_has() {
    let unit = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../dist/tether.service")).unwrap();
    let commands: Vec<&str> =
        unit.lines().filter_map(|l| l.strip_prefix("ExecStartPre=").or_else(|| l.strip_prefix("ExecStart="))).collect();
    assert_eq!(commands.len(), 2, "{unit}");
    for command in commands {
        let mut words = command.split_whitespace();
        assert_eq!(words.next(), Some("/usr/local/bin/tether"));
        let args: Vec<&str> = words.collect();
        // The subcommand exists, and its help lists every flag the unit gives.
        let out = Command::new(tether_bin()).args([args[0], "--help"]).output().unwrap();
        assert!(out.status.success(), "{command}: {}", String::from_utf8_lossy(&out.stderr));
        let help = String::from_utf8_lossy(&out.stdout);
        for flag in args.iter().filter(|a| a.starts_with("--")) {
            assert!(help.contains(flag), "`tether {}` has no {flag}:\n{help}", args[0]);
        }
    }
    assert!(unit.contains("ExecReload=/bin/kill -HUP $MAINPID"), "reload is SIGHUP");
}
