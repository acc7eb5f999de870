//! Checks of the fleet deployment files under `deploy/`: the DaemonSet
//! parses as YAML and every qemu-shim command in it and in the Containerfile
//! is one this CLI's own command-line definition accepts. (scripts/test also
//! validates the DaemonSet against Kubernetes' schemas, offline; no cluster
//! runs it.)

use clap::Parser;
use serde_yaml::Value;

use super::{Cli, Command};

const CONTAINERFILE: &str = include_str!("../../../deploy/Containerfile");
const DAEMONSET: &str = include_str!("../../../deploy/daemonset.yaml");

/// Parses `args` (without the program name) as the CLI would.
fn parse(args: &[String]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("qemu-shim".to_string()).chain(args.iter().cloned()))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .map(|s| {
            s.iter()
                .map(|x| x.as_str().expect("a string").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// The exec-form array of a Containerfile instruction (`CMD ["install"]`).
fn instruction(name: &str) -> Vec<String> {
    let prefix = format!("{name} ");
    let lines: Vec<&str> = CONTAINERFILE
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .collect();
    assert_eq!(lines.len(), 1, "one {name} in deploy/Containerfile");
    serde_json::from_str(&lines[0][prefix.len()..])
        .unwrap_or_else(|e| panic!("{name} is not an exec-form JSON array: {e}"))
}

#[test]
fn containerfile_runs_a_command_the_cli_accepts() {
    let entrypoint = instruction("ENTRYPOINT");
    assert_eq!(entrypoint, ["/usr/local/bin/qemu-shim"]);
    let cmd = instruction("CMD");
    let cli = parse(&cmd).unwrap_or_else(|e| panic!("CMD {cmd:?}: {e}"));
    assert!(matches!(cli.command, Command::Install(_)), "{cmd:?}");
    // The commands its header shows after the image name.
    for args in [&["install"][..], &["uninstall"], &["status"]] {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        parse(&args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
    }
}

#[test]
fn daemonset_is_yaml_and_its_install_command_is_one_the_cli_accepts() {
    let doc: Value = serde_yaml::from_str(DAEMONSET).expect("deploy/daemonset.yaml is YAML");
    assert_eq!(doc["kind"].as_str(), Some("DaemonSet"));
    assert_eq!(doc["apiVersion"].as_str(), Some("apps/v1"));
    let spec = &doc["spec"]["template"]["spec"];
    let mut checked = 0;
    for list in ["initContainers", "containers"] {
        for c in spec[list].as_sequence().into_iter().flatten() {
            let command = strings(&c["command"]);
            if !command.first().is_some_and(|p| p.ends_with("/qemu-shim")) {
                continue;
            }
            let mut args = command[1..].to_vec();
            args.extend(strings(&c["args"]));
            let cli = parse(&args).unwrap_or_else(|e| panic!("{list} {args:?}: {e}"));
            assert!(matches!(cli.command, Command::Install(_)), "{args:?}");
            // Registering in the node's table needs a privileged container.
            assert_eq!(
                c["securityContext"]["privileged"].as_bool(),
                Some(true),
                "{list} {}",
                c["name"].as_str().unwrap_or("?")
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 1, "one qemu-shim install container");
    // The selector must match the pod template's labels, or the API server
    // refuses the DaemonSet.
    let want = &doc["spec"]["selector"]["matchLabels"];
    let labels = &doc["spec"]["template"]["metadata"]["labels"];
    for (k, v) in want.as_mapping().expect("matchLabels") {
        assert_eq!(&labels[k], v, "template labels lack {k:?}");
    }
}

#[test]
fn a_command_the_cli_refuses_is_caught() {
    // The check above can fail: a misspelt option is refused.
    assert!(parse(&["install".to_string(), "--no-such-option".to_string()]).is_err());
}
