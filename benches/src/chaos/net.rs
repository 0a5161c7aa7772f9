//! The test network: one private /24 per run, a bridge in a namespace of its own, one
//! namespace per host and one for the clients, joined by veth pairs. Nothing is added to the
//! root namespace's network: the bridge and every veth end live in namespaces the tool made,
//! so deleting those namespaces removes everything.
//!
//! ```text
//!  chaosN-br: bridge br0 ── v1 ─┬─ eth0 in chaosN-n1 (10.231.N.11)
//!                          ── v2 ─┼─ eth0 in chaosN-n2 (10.231.N.12)
//!                          ── vc ─┴─ eth0 in chaosN-cl (10.231.N.2, the clients)
//! ```
//!
//! Naming: every namespace starts with [`PREFIX`] and the subnet's third octet, and the run
//! that owns the octet holds `/run/raftkv-chaos/N.owner` (its pid), created exclusively: two
//! runs never share a subnet, and `chaos cleanup` can tell a crashed run's leftovers from a
//! live run's.
//!
//! Faults: a one-way block (`from` cannot send to `to`) is an nftables drop rule in `from`'s
//! namespace (silent loss, as a cut cable), or, without nft, a blackhole route there (the
//! sender sees an error at once); `tc netem` adds delay and loss on a host's eth0 (where the
//! kernel lacks netem: a tbf rate limit plus nft random drops).

use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use super::sys;

/// Every namespace the tool makes is named `chaos<octet>-...`.
pub const PREFIX: &str = "chaos";
/// The first two octets of every subnet the tool uses (10.231.0.0/16, private).
pub const SUBNET_BASE: [u8; 2] = [10, 231];
/// Where runs record which subnet octet they own.
pub const OWNER_DIR: &str = "/run/raftkv-chaos";
/// Host addresses are `.HOST_OFFSET + id`; ids stay below this so addresses stay below .255.
pub const HOST_ID_MAX: u64 = 240;
const HOST_OFFSET: u8 = 10;
const CLIENT_HOST: u8 = 2;

/// How one-way blocks are made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockBackend {
    /// nftables drop rules: packets vanish.
    Nft,
    /// Blackhole routes: the sender's kernel refuses at once.
    Route,
}

impl BlockBackend {
    /// `auto` picks nft when it is installed.
    pub fn parse(name: &str) -> Option<BlockBackend> {
        match name {
            "nft" => Some(BlockBackend::Nft),
            "route" => Some(BlockBackend::Route),
            "auto" if sys::has_program("nft") => Some(BlockBackend::Nft),
            "auto" => Some(BlockBackend::Route),
            _ => None,
        }
    }
}

/// One /24 inside [`SUBNET_BASE`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subnet {
    pub octet: u8,
}

impl Subnet {
    pub fn host_ip(self, id: u64) -> Ipv4Addr {
        assert!((1..=HOST_ID_MAX).contains(&id), "host id {id} out of range");
        let last = HOST_OFFSET + u8::try_from(id).expect("checked above");
        Ipv4Addr::new(SUBNET_BASE[0], SUBNET_BASE[1], self.octet, last)
    }

    pub fn client_ip(self) -> Ipv4Addr {
        Ipv4Addr::new(SUBNET_BASE[0], SUBNET_BASE[1], self.octet, CLIENT_HOST)
    }

    pub fn contains(self, ip: Ipv4Addr) -> bool {
        let o = ip.octets();
        [o[0], o[1], o[2]] == [SUBNET_BASE[0], SUBNET_BASE[1], self.octet]
    }

    /// `chaosN`.
    pub fn tag(self) -> String {
        format!("{PREFIX}{}", self.octet)
    }

    pub fn bridge_namespace(self) -> String {
        format!("{}-br", self.tag())
    }

    pub fn client_namespace(self) -> String {
        format!("{}-cl", self.tag())
    }

    pub fn host_namespace(self, id: u64) -> String {
        format!("{}-n{id}", self.tag())
    }
}

/// The network of one run. Dropping it tears everything down.
pub struct Net {
    pub subnet: Subnet,
    pub backend: BlockBackend,
    owner_file: PathBuf,
    /// Namespaces created, in order (removed in reverse).
    namespaces: Vec<String>,
    /// Active one-way blocks (from, to), by host id.
    blocks: BTreeSet<(u64, u64)>,
    /// Hosts cut off in both directions by rules in their own namespace ([`Net::isolate`]).
    isolated: BTreeSet<u64>,
    /// Hosts with a netem or tbf qdisc.
    shaped: BTreeSet<u64>,
    /// Whether the kernel has `sch_netem` (probed on the bridge).
    pub netem: bool,
}

impl Net {
    /// Claims a free subnet (trying octets from `preferred` on) and creates the bridge and
    /// client namespaces.
    ///
    /// # Errors
    /// If no subnet is free or a command fails (what was made is removed again).
    pub fn create(preferred: u8, backend: BlockBackend) -> Result<Net> {
        std::fs::create_dir_all(OWNER_DIR).with_context(|| format!("creating {OWNER_DIR}"))?;
        let existing = sys::run("ip", &["netns", "list"])?;
        let root_addresses = sys::run("ip", &["-4", "-o", "addr", "show"])?;
        let mut claimed = None;
        for step in 0..=255u16 {
            let octet = u8::try_from((u16::from(preferred) + step) % 256).expect("mod 256");
            let subnet = Subnet { octet };
            let in_use = existing
                .lines()
                .any(|line| line.starts_with(&format!("{}-", subnet.tag())))
                || root_addresses.contains(&format!(" 10.231.{octet}."));
            if in_use {
                continue;
            }
            let owner_file = PathBuf::from(format!("{OWNER_DIR}/{octet}.owner"));
            let file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&owner_file);
            if let Ok(mut file) = file {
                writeln!(file, "{}", std::process::id())?;
                claimed = Some((subnet, owner_file));
                break;
            }
        }
        let Some((subnet, owner_file)) = claimed else {
            bail!("no free subnet in 10.231.0.0/16 (run `chaos cleanup`?)");
        };
        let mut net = Net {
            subnet,
            backend,
            owner_file,
            namespaces: Vec::new(),
            blocks: BTreeSet::new(),
            isolated: BTreeSet::new(),
            shaped: BTreeSet::new(),
            netem: false,
        };
        net.create_bridge()
            .and_then(|()| net.create_client())
            .context("creating the test network")?;
        Ok(net)
    }

    fn add_namespace(&mut self, name: &str) -> Result<()> {
        sys::run("ip", &["netns", "add", name])?;
        self.namespaces.push(name.to_owned());
        sys::run("ip", &["-n", name, "link", "set", "lo", "up"])?;
        Ok(())
    }

    fn create_bridge(&mut self) -> Result<()> {
        let bridge = self.subnet.bridge_namespace();
        self.add_namespace(&bridge)?;
        sys::run(
            "ip",
            &["-n", &bridge, "link", "add", "br0", "type", "bridge"],
        )?;
        sys::run("ip", &["-n", &bridge, "link", "set", "br0", "up"])?;
        let probe = [
            "netns", "exec", &bridge, "tc", "qdisc", "add", "dev", "br0", "root", "netem", "delay",
            "1ms",
        ];
        self.netem = sys::run("ip", &probe).is_ok();
        if self.netem {
            sys::run(
                "ip",
                &[
                    "netns", "exec", &bridge, "tc", "qdisc", "del", "dev", "br0", "root",
                ],
            )?;
        }
        Ok(())
    }

    /// A namespace with `eth0` at `ip`/24, plugged into the bridge as `port`.
    fn attach(&mut self, namespace: &str, port: &str, ip: Ipv4Addr) -> Result<()> {
        self.add_namespace(namespace)?;
        let bridge = self.subnet.bridge_namespace();
        sys::run(
            "ip",
            &[
                "-n", &bridge, "link", "add", port, "type", "veth", "peer", "name", "eth0",
                "netns", namespace,
            ],
        )?;
        sys::run("ip", &["-n", &bridge, "link", "set", port, "master", "br0"])?;
        sys::run("ip", &["-n", &bridge, "link", "set", port, "up"])?;
        let cidr = format!("{ip}/24");
        sys::run(
            "ip",
            &["-n", namespace, "addr", "add", &cidr, "dev", "eth0"],
        )?;
        sys::run("ip", &["-n", namespace, "link", "set", "eth0", "up"])?;
        if self.backend == BlockBackend::Nft {
            let script = "add table inet chaos\n\
                          add chain inet chaos output { type filter hook output priority 0 ; }\n\
                          add chain inet chaos input { type filter hook input priority 0 ; }\n\
                          add chain inet chaos shape { type filter hook output priority 1 ; }\n";
            nft(namespace, script)?;
        }
        Ok(())
    }

    fn create_client(&mut self) -> Result<()> {
        let namespace = self.subnet.client_namespace();
        self.attach(&namespace, "vc", self.subnet.client_ip())
    }

    /// Creates host `id`'s namespace and plugs it in.
    ///
    /// # Errors
    /// If a command fails.
    pub fn add_host(&mut self, id: u64) -> Result<()> {
        let namespace = self.subnet.host_namespace(id);
        self.attach(&namespace, &format!("v{id}"), self.subnet.host_ip(id))
            .with_context(|| format!("creating host {id}'s namespace"))
    }

    /// From now on `from` cannot send to `to` (one way).
    ///
    /// # Errors
    /// If the rule cannot be installed.
    pub fn block(&mut self, from: u64, to: u64) -> Result<()> {
        if !self.blocks.insert((from, to)) {
            return Ok(());
        }
        let namespace = self.subnet.host_namespace(from);
        let ip = self.subnet.host_ip(to).to_string();
        match self.backend {
            BlockBackend::Nft => nft(
                &namespace,
                &format!("add rule inet chaos output ip daddr {ip} drop\n"),
            ),
            BlockBackend::Route => sys::run(
                "ip",
                &[
                    "-n",
                    &namespace,
                    "route",
                    "add",
                    "blackhole",
                    &format!("{ip}/32"),
                ],
            )
            .map(drop),
        }
    }

    /// Cuts host `id` off from `others` in both directions. With nft, every rule lives in
    /// `id`'s own namespace (output to them, input from them), added and later removed in one
    /// nft transaction each, so the cut and the heal take effect at one instant (the
    /// availability measurements time from the heal). With blackhole routes, as one-way
    /// blocks both ways.
    ///
    /// # Errors
    /// If a rule cannot be installed.
    pub fn isolate(&mut self, id: u64, others: &[u64]) -> Result<()> {
        if self.backend == BlockBackend::Route {
            for other in others {
                self.block(id, *other)?;
                self.block(*other, id)?;
            }
            return Ok(());
        }
        let mut script = String::new();
        for other in others {
            let ip = self.subnet.host_ip(*other);
            script.push_str(&format!("add rule inet chaos output ip daddr {ip} drop\n"));
            script.push_str(&format!("add rule inet chaos input ip saddr {ip} drop\n"));
        }
        nft(&self.subnet.host_namespace(id), &script)?;
        self.isolated.insert(id);
        Ok(())
    }

    /// Removes every block and isolation.
    ///
    /// # Errors
    /// If a rule cannot be removed.
    pub fn heal(&mut self) -> Result<()> {
        for id in std::mem::take(&mut self.isolated) {
            nft(
                &self.subnet.host_namespace(id),
                "flush chain inet chaos output\nflush chain inet chaos input\n",
            )?;
        }
        let blocks = std::mem::take(&mut self.blocks);
        let sources: BTreeSet<u64> = blocks.iter().map(|(from, _)| *from).collect();
        match self.backend {
            BlockBackend::Nft => {
                for from in sources {
                    nft(
                        &self.subnet.host_namespace(from),
                        "flush chain inet chaos output\n",
                    )?;
                }
            }
            BlockBackend::Route => {
                for (from, to) in blocks {
                    let namespace = self.subnet.host_namespace(from);
                    let ip = format!("{}/32", self.subnet.host_ip(to));
                    sys::run("ip", &["-n", &namespace, "route", "del", "blackhole", &ip])?;
                }
            }
        }
        Ok(())
    }

    /// Active blocks, for the nemesis log.
    pub fn blocks(&self) -> &BTreeSet<(u64, u64)> {
        &self.blocks
    }

    /// Adds delay (with jitter) and loss to everything host `id` sends: `tc netem` where the
    /// kernel has it; otherwise a token-bucket rate limit whose queue holds `delay_ms` of
    /// traffic (delay under load, drops past it) and, with nft, a random drop of
    /// `loss_percent` of the packets. Returns which mechanism was used.
    ///
    /// # Errors
    /// If tc or nft fails.
    pub fn shape(
        &mut self,
        id: u64,
        delay_ms: u64,
        jitter_ms: u64,
        loss_percent: u64,
    ) -> Result<String> {
        let namespace = self.subnet.host_namespace(id);
        if self.netem {
            sys::run(
                "ip",
                &[
                    "netns",
                    "exec",
                    &namespace,
                    "tc",
                    "qdisc",
                    "replace",
                    "dev",
                    "eth0",
                    "root",
                    "netem",
                    "delay",
                    &format!("{delay_ms}ms"),
                    &format!("{jitter_ms}ms"),
                    "loss",
                    &format!("{loss_percent}%"),
                ],
            )?;
            self.shaped.insert(id);
            return Ok(format!(
                "netem delay {delay_ms}±{jitter_ms} ms, loss {loss_percent} %"
            ));
        }
        sys::run(
            "ip",
            &[
                "netns",
                "exec",
                &namespace,
                "tc",
                "qdisc",
                "replace",
                "dev",
                "eth0",
                "root",
                "tbf",
                "rate",
                "4mbit",
                "burst",
                "32kbit",
                "latency",
                &format!("{}ms", delay_ms.max(1)),
            ],
        )?;
        self.shaped.insert(id);
        if self.backend == BlockBackend::Nft && loss_percent > 0 {
            nft(
                &namespace,
                &format!("add rule inet chaos shape numgen random mod 100 < {loss_percent} drop\n"),
            )?;
            return Ok(format!("no netem in this kernel: tbf 4 Mbit/s with a {delay_ms} ms queue, nft random loss {loss_percent} %"));
        }
        Ok(format!(
            "no netem in this kernel: tbf 4 Mbit/s with a {delay_ms} ms queue, no loss"
        ))
    }

    /// Removes every netem or tbf qdisc and random-loss rule.
    ///
    /// # Errors
    /// If tc or nft fails.
    pub fn unshape_all(&mut self) -> Result<()> {
        for id in std::mem::take(&mut self.shaped) {
            let namespace = self.subnet.host_namespace(id);
            sys::run(
                "ip",
                &[
                    "netns", "exec", &namespace, "tc", "qdisc", "del", "dev", "eth0", "root",
                ],
            )?;
            if self.backend == BlockBackend::Nft {
                nft(&namespace, "flush chain inet chaos shape\n")?;
            }
        }
        Ok(())
    }

    /// Kills whatever still runs in this run's namespaces and deletes them, and releases the
    /// subnet. Errors are printed, not returned: teardown goes as far as it can.
    pub fn destroy(&mut self) {
        for namespace in self.namespaces.drain(..).rev() {
            remove_namespace(&namespace);
        }
        if self.owner_file.exists() {
            if let Err(error) = std::fs::remove_file(&self.owner_file) {
                eprintln!("chaos: removing {}: {error}", self.owner_file.display());
            }
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.destroy();
    }
}

fn nft(namespace: &str, script: &str) -> Result<()> {
    let path = std::env::temp_dir().join(format!("chaos-nft-{}-{namespace}", std::process::id()));
    std::fs::write(&path, script).with_context(|| format!("writing {}", path.display()))?;
    let path_text = path.to_string_lossy().into_owned();
    let result = sys::run("ip", &["netns", "exec", namespace, "nft", "-f", &path_text]);
    // Best effort: a leftover file in the temp dir is harmless.
    let _ = std::fs::remove_file(&path);
    result.map(drop)
}

/// SIGKILLs every process in `namespace`, then deletes it.
fn remove_namespace(namespace: &str) {
    match sys::run("ip", &["netns", "pids", namespace]) {
        Ok(pids) => {
            for pid in pids
                .lines()
                .filter_map(|line| line.trim().parse::<u32>().ok())
            {
                if let Err(error) = sys::signal(pid, libc::SIGKILL) {
                    eprintln!("chaos: killing pid {pid} in {namespace}: {error:#}");
                }
            }
        }
        Err(error) => eprintln!("chaos: listing processes in {namespace}: {error:#}"),
    }
    if let Err(error) = sys::run("ip", &["netns", "del", namespace]) {
        eprintln!("chaos: {error:#}");
    }
}

/// `chaos cleanup`: removes the namespaces and owner files of runs whose owner is gone (or of
/// every run with `all`). Returns the namespaces removed.
///
/// # Errors
/// If `ip netns list` fails.
pub fn cleanup(all: bool) -> Result<Vec<String>> {
    let listing = sys::run("ip", &["netns", "list"])?;
    let mut removed = Vec::new();
    for name in listing
        .lines()
        .filter_map(|line| line.split_whitespace().next())
    {
        let Some(octet) = parse_octet(name) else {
            continue;
        };
        if !all && owner_alive(octet) {
            continue;
        }
        remove_namespace(name);
        removed.push(name.to_owned());
    }
    if let Ok(entries) = std::fs::read_dir(OWNER_DIR) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(octet) = name.strip_suffix(".owner").and_then(|o| o.parse().ok()) else {
                continue;
            };
            if all || !owner_alive(octet) {
                // Best effort: a file that vanished meanwhile is what we wanted.
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    Ok(removed)
}

/// The octet of a namespace named `chaosN-...`.
fn parse_octet(name: &str) -> Option<u8> {
    let rest = name.strip_prefix(PREFIX)?;
    let (octet, _) = rest.split_once('-')?;
    octet.parse().ok()
}

fn owner_alive(octet: u8) -> bool {
    std::fs::read_to_string(format!("{OWNER_DIR}/{octet}.owner"))
        .ok()
        .and_then(|text| text.trim().parse::<u32>().ok())
        .is_some_and(|pid| pid != std::process::id() && sys::is_alive(pid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnet_addresses_and_names() {
        let subnet = Subnet { octet: 7 };
        assert_eq!(subnet.host_ip(1), Ipv4Addr::new(10, 231, 7, 11));
        assert_eq!(subnet.client_ip(), Ipv4Addr::new(10, 231, 7, 2));
        assert!(subnet.contains(Ipv4Addr::new(10, 231, 7, 200)));
        assert!(!subnet.contains(Ipv4Addr::new(10, 231, 8, 11)));
        assert!(!subnet.contains(Ipv4Addr::new(192, 168, 7, 11)));
        assert_eq!(subnet.host_namespace(3), "chaos7-n3");
        assert_eq!(parse_octet("chaos7-n3"), Some(7));
        assert_eq!(parse_octet("chaos7-br"), Some(7));
        assert_eq!(parse_octet("other-ns"), None);
        assert_eq!(parse_octet("chaosx-n1"), None);
    }
}
