//! Every algorithm family OpenSSH's `ssh` reaches a server with by
//! default, fleetfix reaches it with too: one OpenSSH sshd per algorithm,
//! configured to offer only that one, and what was negotiated read back
//! from the server's own log.

use crate::common::cli::{json_run, playbook, run};
use crate::common::servers::{Daemon, Host, Servers};

/// Starts one sshd per `(name, host)`, runs a step on each, and checks
/// that the server's log shows `log_line` for it.
fn reach_each(hosts: Vec<(Host, String)>) {
    let (hosts, lines): (Vec<Host>, Vec<String>) = hosts.into_iter().unzip();
    let names: Vec<String> = hosts.iter().map(|h| h.name.clone()).collect();
    let servers = Servers::start(hosts);
    let inv = servers.write_inventory("");
    let pb = playbook(
        servers.dir(),
        "hello.toml",
        "name = \"hello\"\n[[steps]]\nname = \"hello\"\nrun = \"echo hello\"\nchanges = false\n",
    );
    let out = run(&mut json_run(
        servers.dir(),
        &inv,
        servers.known_hosts(),
        &pb,
        &[],
    ));
    assert_eq!(out.code, 0, "{}", out.dump());
    for (name, line) in names.iter().zip(&lines) {
        let log = servers.log(name);
        assert!(log.contains(line.as_str()), "{name}: no {line:?} in\n{log}");
    }
}

fn host(name: &str, lines: &[String]) -> Host {
    lines.iter().fold(
        Host::new(name, Daemon::OpenSsh).sshd("LogLevel DEBUG1"),
        |h, l| h.sshd(l),
    )
}

#[test]
fn every_key_exchange_ssh_offers() {
    let kex = [
        "curve25519-sha256",
        "ecdh-sha2-nistp256",
        "ecdh-sha2-nistp384",
        "ecdh-sha2-nistp521",
        "diffie-hellman-group-exchange-sha256",
        "diffie-hellman-group16-sha512",
        "diffie-hellman-group18-sha512",
        "diffie-hellman-group14-sha256",
    ];
    reach_each(
        kex.iter()
            .enumerate()
            .map(|(i, k)| {
                (
                    host(&format!("kex{i}"), &[format!("KexAlgorithms {k}")]),
                    format!("kex: algorithm: {k}"),
                )
            })
            .collect(),
    );
}

#[test]
fn every_host_key_type_ssh_accepts() {
    let keys = [
        ("ed25519", "ssh-ed25519"),
        ("ecdsa", "ecdsa-sha2-nistp256"),
        ("rsa", "rsa-sha2-512"),
        ("rsa", "rsa-sha2-256"),
    ];
    reach_each(
        keys.iter()
            .enumerate()
            .map(|(i, (t, alg))| {
                (
                    host(&format!("key{i}"), &[format!("HostKeyAlgorithms {alg}")]).key_type(t),
                    format!("kex: host key algorithm: {alg}"),
                )
            })
            .collect(),
    );
}

#[test]
fn every_cipher_ssh_offers() {
    let ciphers = [
        "chacha20-poly1305@openssh.com",
        "aes256-gcm@openssh.com",
        "aes128-gcm@openssh.com",
        "aes256-ctr",
        "aes192-ctr",
        "aes128-ctr",
    ];
    reach_each(
        ciphers
            .iter()
            .enumerate()
            .map(|(i, c)| {
                (
                    host(&format!("cipher{i}"), &[format!("Ciphers {c}")]),
                    format!("kex: client->server cipher: {c} "),
                )
            })
            .collect(),
    );
}

/// MACs matter with the CTR ciphers (the AEAD ones have their own).
#[test]
fn every_mac_ssh_offers_with_a_ctr_cipher() {
    let macs = [
        "hmac-sha2-256-etm@openssh.com",
        "hmac-sha2-512-etm@openssh.com",
        "hmac-sha1-etm@openssh.com",
        "hmac-sha2-256",
        "hmac-sha2-512",
    ];
    reach_each(
        macs.iter()
            .enumerate()
            .map(|(i, m)| {
                (
                    host(
                        &format!("mac{i}"),
                        &["Ciphers aes128-ctr".to_string(), format!("MACs {m}")],
                    ),
                    format!("cipher: aes128-ctr MAC: {m} "),
                )
            })
            .collect(),
    );
}
