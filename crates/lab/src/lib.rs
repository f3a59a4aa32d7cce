//! A small internet built from Linux network namespaces, for tests.
//!
//! A [`Lab`] is an "internet" (a bridge in a namespace of its own) with
//! public hosts on it, home routers (masquerading NAT that drops every
//! unsolicited inbound packet, optionally running miniupnpd with UPnP IGD,
//! NAT-PMP and PCP) and hosts behind them. Every address exists only inside
//! the lab's namespaces, which have no route out of it, and everything is
//! removed when the `Lab` is dropped.
//!
//! The lab needs root (or CAP_NET_ADMIN and CAP_SYS_ADMIN), `ip` from
//! iproute2 and `nft`; routers with port mapping need `miniupnpd`.
//! [`Lab::new`] says why it cannot run, so a test can print one skip line.
//!
//! Two ways to run something on a host: [`Host::command`] starts a program
//! inside the host's namespace, and [`Host::enter`] runs a closure on a
//! thread that joined it, so sockets created there (std or tokio) belong to
//! the host and can be used from anywhere afterwards.

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::Duration;

/// The lab's "internet": a /24 that exists only inside the lab. It is
/// not a reserved or private range, because miniupnpd refuses to map on
/// a router whose WAN address is one.
pub const INTERNET: [u8; 3] = [11, 0, 0];

/// Why a lab could not be built.
#[derive(Debug)]
pub struct Unavailable(pub String);

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unavailable {}

/// How a router treats traffic.
#[derive(Debug, Clone, Copy, Default)]
pub struct RouterKind {
    /// Run miniupnpd on the router: UPnP IGD, NAT-PMP and PCP on its LAN.
    pub port_mapping: bool,
    /// A new external port for every destination (symmetric NAT).
    pub symmetric: bool,
    /// A new external port for every TCP connection only; UDP keeps its
    /// ports (unless `symmetric`).
    pub symmetric_tcp: bool,
}

/// A host in the lab: a network namespace with one address.
#[derive(Debug, Clone)]
pub struct Host {
    /// The namespace's name.
    pub netns: String,
    /// The host's address inside the lab.
    pub ip: Ipv4Addr,
}

/// A home router: its WAN address on the internet, its LAN, and the host
/// behind it.
#[derive(Debug, Clone)]
pub struct Router {
    /// The router's own namespace; its WAN interface is `wan`, its LAN `lan`.
    pub host: Host,
    /// The router's LAN address (the hosts' gateway).
    pub lan_ip: Ipv4Addr,
    /// How it treats traffic.
    pub kind: RouterKind,
    name: String,
}

/// The lab. Dropping it kills what it started and deletes its namespaces.
pub struct Lab {
    prefix: String,
    namespaces: Vec<String>,
    children: Vec<Child>,
    bridge_ports: u32,
    routers: u8,
    dir: tempfile::TempDir,
}

impl fmt::Debug for Lab {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lab").field("prefix", &self.prefix).finish()
    }
}

static LABS: AtomicU32 = AtomicU32::new(0);

fn run(cmd: &mut Command) -> Result<String, Unavailable> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Unavailable(format!("cannot run {cmd:?}: {e}")))?;
    if !out.status.success() {
        return Err(Unavailable(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ip(args: &[&str]) -> Result<String, Unavailable> {
    run(Command::new("ip").args(args))
}

impl Lab {
    /// An empty internet: the bridge in its own namespace. Fails, saying
    /// why, where namespaces cannot be made (not root, no iproute2, no nft).
    pub fn new() -> Result<Lab, Unavailable> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return Err(Unavailable("network namespaces need root".into()));
        }
        for tool in ["ip", "nft"] {
            if Command::new(tool)
                .arg("-V")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_err()
            {
                return Err(Unavailable(format!("`{tool}` is not installed")));
            }
        }
        let n = LABS.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("rl{}x{n}", std::process::id());
        let dir = tempfile::tempdir().map_err(|e| Unavailable(format!("temp dir: {e}")))?;
        let mut lab = Lab {
            prefix,
            namespaces: Vec::new(),
            children: Vec::new(),
            bridge_ports: 0,
            routers: 0,
            dir,
        };
        let net = lab.netns("net")?;
        lab.exec(&net, &["ip", "link", "add", "br0", "type", "bridge"])?;
        lab.exec(&net, &["ip", "link", "set", "br0", "up"])?;
        Ok(lab)
    }

    /// A lab, or `None` after printing the one line that says why the
    /// test is skipped (no root, no network namespaces).
    pub fn or_skip() -> Option<Lab> {
        match Lab::new() {
            Ok(lab) => Some(lab),
            Err(why) => {
                eprintln!("skipped: cannot build the network lab: {why}");
                None
            }
        }
    }

    /// A scratch directory that lives as long as the lab.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn netns(&mut self, name: &str) -> Result<String, Unavailable> {
        let full = format!("{}-{name}", self.prefix);
        ip(&["netns", "add", &full])?;
        self.namespaces.push(full.clone());
        self.exec(&full, &["ip", "link", "set", "lo", "up"])?;
        Ok(full)
    }

    fn exec(&self, netns: &str, args: &[&str]) -> Result<String, Unavailable> {
        run(Command::new("ip").args(["netns", "exec", netns]).args(args))
    }

    /// Plugs interface `ifname` of `netns` into the internet's bridge.
    fn plug(&mut self, netns: &str, ifname: &str) -> Result<(), Unavailable> {
        let port = format!("p{}", self.bridge_ports);
        self.bridge_ports += 1;
        let net = format!("{}-net", self.prefix);
        ip(&[
            "link", "add", ifname, "netns", netns, "type", "veth", "peer", "name", &port, "netns",
            &net,
        ])?;
        self.exec(&net, &["ip", "link", "set", &port, "master", "br0", "up"])?;
        self.exec(netns, &["ip", "link", "set", ifname, "up"])?;
        Ok(())
    }

    /// A host with a public address on the internet (`INTERNET.last`).
    pub fn public_host(&mut self, name: &str, last: u8) -> Result<Host, Unavailable> {
        let netns = self.netns(name)?;
        self.plug(&netns, "eth0")?;
        let ip = Ipv4Addr::new(INTERNET[0], INTERNET[1], INTERNET[2], last);
        self.exec(
            &netns,
            &["ip", "addr", "add", &format!("{ip}/24"), "dev", "eth0"],
        )?;
        // Multicast goes out on the link (the host has no default route),
        // so that programs that find each other on a LAN can do so here.
        self.exec(
            &netns,
            &["ip", "route", "add", "224.0.0.0/4", "dev", "eth0"],
        )?;
        Ok(Host { netns, ip })
    }

    /// A host on the internet's link with only an IPv6 address,
    /// `2001:db8::LAST/64` (the documentation prefix, which exists only
    /// inside the lab), and no IPv4 address but loopback: its `Host::ip`
    /// is 0.0.0.0. Fails, saying why, where IPv6 is turned off.
    pub fn ipv6_host(&mut self, name: &str, last: u16) -> Result<(Host, Ipv6Addr), Unavailable> {
        let netns = self.netns(name)?;
        self.exec(
            &netns,
            &["sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=0"],
        )?;
        self.plug(&netns, "eth0")?;
        let ip6 = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, last);
        // No duplicate address detection: the address is usable at once.
        self.exec(
            &netns,
            &[
                "ip",
                "-6",
                "addr",
                "add",
                &format!("{ip6}/64"),
                "dev",
                "eth0",
                "nodad",
            ],
        )?;
        let host = Host {
            netns,
            ip: Ipv4Addr::UNSPECIFIED,
        };
        Ok((host, ip6))
    }

    /// A home router with WAN address `INTERNET.last` and LAN
    /// 192.168.N.0/24 (N counts routers from 1): masquerade towards the
    /// internet, and every inbound packet that is not an answer dropped,
    /// unless a port mapping (made through miniupnpd) forwards it.
    pub fn router(
        &mut self,
        name: &str,
        last: u8,
        kind: RouterKind,
    ) -> Result<Router, Unavailable> {
        self.routers += 1;
        let n = self.routers;
        let netns = self.netns(name)?;
        self.plug(&netns, "wan")?;
        let ip = Ipv4Addr::new(INTERNET[0], INTERNET[1], INTERNET[2], last);
        self.exec(
            &netns,
            &["ip", "addr", "add", &format!("{ip}/24"), "dev", "wan"],
        )?;
        self.exec(&netns, &["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
        let masquerade = if kind.symmetric {
            "masquerade fully-random"
        } else {
            "masquerade"
        };
        let tcp = if kind.symmetric_tcp {
            "oifname \"wan\" meta l4proto tcp masquerade fully-random\n    "
        } else {
            ""
        };
        let rules = format!(
            r#"table inet filter {{
  chain input {{
    type filter hook input priority 0; policy accept;
    iifname "wan" ct state established,related accept
    iifname "wan" drop
  }}
  chain forward {{
    type filter hook forward priority 0; policy drop;
    ct state established,related accept
    iifname "lan" oifname "wan" accept
    jump miniupnpd
  }}
  chain miniupnpd {{
  }}
}}
table inet nat {{
  chain prerouting {{
    type nat hook prerouting priority -100; policy accept;
    jump prerouting_miniupnpd
  }}
  chain postrouting {{
    type nat hook postrouting priority 100; policy accept;
    {tcp}jump postrouting_miniupnpd
    oifname "wan" {masquerade}
  }}
  chain prerouting_miniupnpd {{
  }}
  chain postrouting_miniupnpd {{
  }}
}}
"#
        );
        let file = self.dir.path().join(format!("{name}.nft"));
        std::fs::write(&file, rules)
            .map_err(|e| Unavailable(format!("{}: {e}", file.display())))?;
        self.exec(&netns, &["nft", "-f", &file.to_string_lossy()])?;
        let lan_ip = Ipv4Addr::new(192, 168, n, 1);
        Ok(Router {
            host: Host { netns, ip },
            lan_ip,
            kind,
            name: name.to_owned(),
        })
    }

    /// The host behind `router`, at 192.168.N.10, its default route
    /// through the router. A router with port mapping starts miniupnpd on
    /// its LAN now that it has one. One host per router.
    pub fn host_behind(&mut self, router: &Router, name: &str) -> Result<Host, Unavailable> {
        let netns = self.netns(name)?;
        ip(&[
            "link",
            "add",
            "lan",
            "netns",
            &router.host.netns,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &netns,
        ])?;
        let [a, b, c, _] = router.lan_ip.octets();
        let ip = Ipv4Addr::new(a, b, c, 10);
        let rns = router.host.netns.clone();
        self.exec(
            &rns,
            &[
                "ip",
                "addr",
                "add",
                &format!("{}/24", router.lan_ip),
                "dev",
                "lan",
            ],
        )?;
        self.exec(&rns, &["ip", "link", "set", "lan", "up"])?;
        self.exec(
            &netns,
            &["ip", "addr", "add", &format!("{ip}/24"), "dev", "eth0"],
        )?;
        self.exec(&netns, &["ip", "link", "set", "eth0", "up"])?;
        self.exec(
            &netns,
            &[
                "ip",
                "route",
                "add",
                "default",
                "via",
                &router.lan_ip.to_string(),
            ],
        )?;
        if router.kind.port_mapping {
            self.miniupnpd(router)?;
        }
        Ok(Host { netns, ip })
    }

    fn miniupnpd(&mut self, router: &Router) -> Result<(), Unavailable> {
        let name = &router.name;
        let [_, _, n, _] = router.lan_ip.octets();
        let conf = format!(
            "ext_ifname=wan\nlistening_ip=lan\nenable_natpmp=yes\nenable_upnp=yes\n\
             secure_mode=yes\nsystem_uptime=yes\n\
             uuid=6c0ffee0-0000-4000-8000-{:012x}\n\
             upnp_table_name=filter\nupnp_nat_table_name=nat\nupnp_forward_chain=miniupnpd\n\
             upnp_nat_chain=prerouting_miniupnpd\nupnp_nat_postrouting_chain=postrouting_miniupnpd\n\
             allow 1024-65535 192.168.{n}.0/24 1024-65535\ndeny 0-65535 0.0.0.0/0 0-65535\n",
            u64::from(n)
        );
        let path = self.dir.path().join(format!("{name}-miniupnpd.conf"));
        std::fs::write(&path, conf).map_err(|e| Unavailable(format!("{}: {e}", path.display())))?;
        let pid = self.dir.path().join(format!("{name}-miniupnpd.pid"));
        let mut child = Command::new("ip")
            .args(["netns", "exec", &router.host.netns, "miniupnpd", "-d", "-f"])
            .arg(&path)
            .arg("-P")
            .arg(&pid)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Unavailable(format!("cannot start miniupnpd: {e}")))?;
        let stderr = child.stderr.take();
        self.children.push(child);
        // Ready once it says it listens for NAT-PMP (after UPnP's HTTP).
        let (tx, rx) = mpsc::channel();
        let log = self.dir.path().join(format!("{name}-miniupnpd.log"));
        std::thread::spawn(move || {
            let Some(stderr) = stderr else { return };
            let mut out = File::create(log).ok();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(f) = out.as_mut() {
                    use std::io::Write;
                    let _ = writeln!(f, "{line}");
                }
                if line.contains("Listening for NAT-PMP") {
                    let _ = tx.send(());
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(10))
            .map_err(|_| Unavailable("miniupnpd did not start within 10 s".into()))
    }

    /// Starts `program` on `host`. The lab kills it when dropped.
    pub fn spawn(&mut self, host: &Host, cmd: &mut Command) -> std::io::Result<u32> {
        let child = self.wrap(host, cmd).spawn()?;
        let id = child.id();
        self.children.push(child);
        Ok(id)
    }

    /// `cmd`, to be run inside `host`'s namespace (`ip netns exec`).
    pub fn wrap(&self, host: &Host, cmd: &Command) -> Command {
        host.command_from(cmd)
    }

    /// Forgets every connection the routers track, so one case's mappings
    /// and answers do not let the next case's packets through.
    pub fn flush_conntrack(&self, router: &Router) -> Result<(), Unavailable> {
        // conntrack -F exits 0 also when the table is empty.
        self.exec(&router.host.netns, &["conntrack", "-F"])
            .map(|_| ())
    }

    /// miniupnpd's log of router `name`, for a failing test to print.
    pub fn miniupnpd_log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{name}-miniupnpd.log")))
            .unwrap_or_default()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in self.namespaces.iter().rev() {
            remove_netns(ns);
        }
    }
}

/// Kills what runs inside namespace `ns` and deletes it.
fn remove_netns(ns: &str) {
    // Anything still running inside (a program a test started without the
    // lab) goes with its namespace.
    if let Ok(pids) = ip(&["netns", "pids", ns]) {
        for pid in pids
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    let _ = ip(&["netns", "del", ns]);
}

/// Deletes the namespaces of every lab this process made, killing what
/// runs inside them: for a program that ends on a signal, where no `Lab`
/// is dropped. Labs of other processes are left alone.
pub fn remove_labs_of_this_process() {
    let prefix = format!("rl{}x", std::process::id());
    let Ok(list) = ip(&["netns", "list"]) else {
        return;
    };
    let mine: Vec<&str> = list
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| {
            // rl{pid}x{n}-{name}: the pid must end where the prefix does.
            n.strip_prefix(&prefix)
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
        })
        .collect();
    for ns in mine.into_iter().rev() {
        remove_netns(ns);
    }
}

impl Host {
    /// `program` to be run inside this host's namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.netns]).arg(program);
        cmd
    }

    fn command_from(&self, cmd: &Command) -> Command {
        let mut out = self.command(cmd.get_program());
        out.args(cmd.get_args());
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => out.env(k, v),
                None => out.env_remove(k),
            };
        }
        if let Some(dir) = cmd.get_current_dir() {
            out.current_dir(dir);
        }
        out
    }

    /// Runs `f` on a thread that joined this host's network namespace.
    /// Sockets it creates live in the host's network for good.
    pub fn enter<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::io::Result<T> {
        let path = PathBuf::from("/run/netns").join(&self.netns);
        std::thread::spawn(move || {
            let ns = File::open(&path)?;
            // SAFETY: setns on a valid namespace fd; it changes only this
            // thread's network namespace.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(f())
        })
        .join()
        .map_err(|_| std::io::Error::other("the thread in the namespace panicked"))?
    }
}
