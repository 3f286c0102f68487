//! Redis set-ups beyond one server: a Cluster (`redis+cluster://`) and a
//! Sentinel-managed primary (`redis+sentinel://`), each run from real
//! `redis-server` processes on loopback TCP ports (Sentinel and Cluster
//! announce addresses, so unix sockets will not do). The store contract runs
//! on both (`store_contract::on_redis_cluster`, `…::on_redis_sentinel`);
//! here are the behaviours only these set-ups have: finding the slot's node
//! from a seed that does not hold it, and following a Sentinel failover.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rollgate::store::StoreConfig;
use rollgate::store::{RedisOptions, Stores};
use tempfile::TempDir;

// === harness ===

/// A free loopback port, as the kernel hands them out. Another process may
/// take it before redis-server binds it; [`spawn`] then tries again.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// True once `redis-server` on `port` answers `PING` (any answer).
fn answers(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 64];
    s.write_all(b"PING\r\n").is_ok() && s.read(&mut buf).unwrap_or(0) > 0
}

/// A `redis-server` process on a loopback port; killed on drop.
pub struct Node {
    pub port: u16,
    child: Option<Child>,
}

impl Node {
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A plain connection to this one node, for set-up and checks.
    pub fn conn(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .unwrap()
            .get_connection_with_timeout(Duration::from_secs(5))
            .unwrap()
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `redis-server` with `args(port)` in `dir`, on a fresh port each
/// attempt until one binds.
fn spawn(dir: &Path, name: &str, args: impl Fn(u16) -> Vec<String>) -> Node {
    for _ in 0..5 {
        let port = free_port();
        let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
        let mut child = Command::new("redis-server")
            .args(args(port))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run redis-server ({e}): scripts/test installs it"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if answers(port) {
                return Node {
                    port,
                    child: Some(child),
                };
            }
            if child.try_wait().unwrap().is_some() {
                break; // the port was taken meanwhile: try another
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    let log = std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default();
    panic!("redis-server {name} did not come up:\n{log}");
}

fn data_node_args(dir: &Path, name: &str, port: u16) -> Vec<String> {
    let data = dir.join(name);
    std::fs::create_dir_all(&data).unwrap();
    [
        "--bind",
        "127.0.0.1",
        "--port",
        &port.to_string(),
        "--save",
        "",
        "--appendonly",
        "yes",
        "--dir",
        &data.display().to_string(),
    ]
    .map(String::from)
    .to_vec()
}

fn wait_for(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A two-node Redis Cluster. The slot of `{rollgate}` is on the second
/// node; the URL names only the first, so the store must discover where
/// its keys live.
pub struct RedisCluster {
    _dir: TempDir,
    seed: Node,
    holder: Node,
}

impl RedisCluster {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let node = |name: &'static str| {
            let path = dir.path().to_owned();
            spawn(dir.path(), name, move |port| {
                let mut args = data_node_args(&path, name, port);
                let conf = path.join(format!("{name}-nodes.conf"));
                args.extend([
                    "--cluster-enabled".into(),
                    "yes".into(),
                    "--cluster-config-file".into(),
                    conf.display().to_string(),
                    "--cluster-port".into(),
                    free_port().to_string(),
                ]);
                args
            })
        };
        let (seed, holder) = (node("seed"), node("holder"));
        let mut conn = seed.conn();
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg("{rollgate}")
            .query(&mut conn)
            .unwrap();
        assert!(slot > 0, "the harness gives the seed the slots below it");
        let _: () = redis::cmd("CLUSTER")
            .arg("ADDSLOTSRANGE")
            .arg(0)
            .arg(slot - 1)
            .query(&mut conn)
            .unwrap();
        let _: () = redis::cmd("CLUSTER")
            .arg("ADDSLOTSRANGE")
            .arg(slot)
            .arg(16383)
            .query(&mut holder.conn())
            .unwrap();
        let bus: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("cluster-port")
            .query(&mut holder.conn())
            .unwrap();
        let bus: u16 = bus[1].parse().unwrap();
        let _: () = redis::cmd("CLUSTER")
            .arg("MEET")
            .arg("127.0.0.1")
            .arg(holder.port)
            .arg(bus)
            .query(&mut conn)
            .unwrap();
        for node in [&seed, &holder] {
            wait_for("the cluster to form", Duration::from_secs(20), || {
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query(&mut node.conn())
                    .unwrap();
                info.contains("cluster_state:ok") && info.contains("cluster_known_nodes:2")
            });
        }
        Self {
            _dir: dir,
            seed,
            holder,
        }
    }

    /// The store URL: the seed node only.
    pub fn url(&self) -> String {
        format!("redis+cluster://127.0.0.1:{}", self.seed.port)
    }

    /// A plain URL of the node holding rollgate's keys, for tampering.
    pub fn data_url(&self) -> String {
        self.holder.url()
    }

    /// Keys stored on the node that does not hold rollgate's slot.
    pub fn keys_on_seed(&self) -> Vec<String> {
        redis::cmd("KEYS")
            .arg("*")
            .query(&mut self.seed.conn())
            .unwrap()
    }
}

/// A primary watched by one Sentinel (service `rollgate`), optionally with
/// a replica the Sentinel can promote.
pub struct RedisSentinel {
    dir: TempDir,
    pub primary: Node,
    pub replica: Option<Node>,
    sentinel: Node,
}

impl RedisSentinel {
    pub fn start(with_replica: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_owned();
        let primary = spawn(dir.path(), "primary", |port| {
            data_node_args(&path, "primary", port)
        });
        let replica = with_replica.then(|| {
            let primary_port = primary.port.to_string();
            let replica = spawn(dir.path(), "replica", |port| {
                let mut args = data_node_args(&path, "replica", port);
                args.extend([
                    "--replicaof".into(),
                    "127.0.0.1".into(),
                    primary_port.clone(),
                ]);
                args
            });
            wait_for("the replica to sync", Duration::from_secs(20), || {
                let info: String = redis::cmd("INFO")
                    .arg("replication")
                    .query(&mut replica.conn())
                    .unwrap();
                info.contains("master_link_status:up")
            });
            replica
        });
        let primary_port = primary.port;
        let sentinel = spawn(dir.path(), "sentinel", |port| {
            // Sentinel rewrites its config file, so each attempt writes one.
            let conf = path.join(format!("sentinel-{port}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "bind 127.0.0.1\nport {port}\ndir {}\n\
                     sentinel monitor rollgate 127.0.0.1 {primary_port} 1\n\
                     sentinel down-after-milliseconds rollgate 500\n\
                     sentinel failover-timeout rollgate 5000\n",
                    path.display()
                ),
            )
            .unwrap();
            vec![conf.display().to_string(), "--sentinel".into()]
        });
        let server = Self {
            dir,
            primary,
            replica,
            sentinel,
        };
        wait_for(
            "the sentinel to know the set-up",
            Duration::from_secs(20),
            || {
                let replicas: Vec<redis::Value> = redis::cmd("SENTINEL")
                    .arg("REPLICAS")
                    .arg("rollgate")
                    .query(&mut server.sentinel.conn())
                    .unwrap_or_default();
                server.primary_port() == Some(server.primary.port)
                    && replicas.len() == usize::from(server.replica.is_some())
            },
        );
        server
    }

    /// The store URL: the Sentinel and the service name.
    pub fn url(&self) -> String {
        format!("redis+sentinel://127.0.0.1:{}/rollgate", self.sentinel.port)
    }

    /// A plain URL of the current primary, for tampering.
    pub fn data_url(&self) -> String {
        let port = self.primary_port().expect("the sentinel names a primary");
        format!("redis://127.0.0.1:{port}")
    }

    /// The primary's port as the Sentinel names it now.
    pub fn primary_port(&self) -> Option<u16> {
        let addr: Option<(String, u16)> = redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg("rollgate")
            .query(&mut self.sentinel.conn())
            .ok()?;
        addr.map(|(_, port)| port)
    }

    /// The Sentinel's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sentinel.log")).unwrap_or_default()
    }
}

async fn open(url: String, options: &RedisOptions) -> Stores {
    rollgate::store::open_with(&StoreConfig::Redis(url), options)
        .await
        .unwrap()
}

fn options() -> RedisOptions {
    RedisOptions {
        timeout: Duration::from_millis(500),
        ..RedisOptions::default()
    }
}

fn grant(jti: &str) -> rollgate::grants::StoredGrant {
    rollgate::grants::StoredGrant {
        jti: jti.into(),
        user: "alice".into(),
        namespace: "production".into(),
        application: "web".into(),
        ticket_id: "1".into(),
        ticket_number: "RG-1".into(),
        expires_at: jiff::Timestamp::now().as_second() + 3600,
        token: format!("token-{jti}"),
    }
}

// === tests ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_store_finds_its_slot_from_a_seed_that_does_not_hold_it() {
    let cluster = tokio::task::spawn_blocking(RedisCluster::start)
        .await
        .unwrap();
    let stores = open(cluster.url(), &options()).await;

    stores.grants.put_grant(&grant("g1")).await.unwrap();
    let now = jiff::Timestamp::now().as_second();
    let found = stores
        .grants
        .find_grants("alice", "production", "web", now)
        .await
        .unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    let record = stores
        .audit
        .append(rollgate::audit::AuditRecord::default())
        .await
        .unwrap();
    assert_eq!(record.id, "1");
    assert!(stores.audit.verify().await.unwrap().ok);

    // Everything went to the node of the `{rollgate}` slot, none to the seed.
    let seed_keys = tokio::task::spawn_blocking(move || cluster.keys_on_seed())
        .await
        .unwrap();
    assert_eq!(seed_keys, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_store_follows_a_failover_without_a_restart() {
    let mut set_up = tokio::task::spawn_blocking(|| RedisSentinel::start(true))
        .await
        .unwrap();
    let stores = open(set_up.url(), &options()).await;
    stores.grants.put_grant(&grant("before")).await.unwrap();
    let first = stores
        .audit
        .append(rollgate::audit::AuditRecord::default())
        .await
        .unwrap();
    // Replication is asynchronous: make sure the replica has both writes
    // before the primary dies, as a real failover would need too. (`WAIT`
    // on a connection of its own would wait for that connection's writes
    // only, which are none: compare the replication offsets instead.)
    let offset = |conn: &mut redis::Connection, field: &str| -> i64 {
        let info: String = redis::cmd("INFO").arg("replication").query(conn).unwrap();
        info.lines()
            .find_map(|l| {
                l.strip_prefix(field)?
                    .strip_prefix(':')?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(-1)
    };
    let written = offset(&mut set_up.primary.conn(), "master_repl_offset");
    let replica = set_up.replica.as_ref().expect("a replica");
    let deadline = Instant::now() + Duration::from_secs(30);
    while offset(&mut replica.conn(), "slave_repl_offset") < written {
        assert!(
            Instant::now() < deadline,
            "the replica did not catch up in 30 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let old_port = set_up.primary.port;
    set_up.primary.kill();

    // Calls fail (within the budget) until the Sentinel promotes the
    // replica; then the same store instance works against the new primary.
    let start = Instant::now();
    let now = jiff::Timestamp::now().as_second();
    let found = loop {
        let call = stores.grants.find_grants("alice", "production", "web", now);
        // Far above the 500 ms budget: a call that hangs never answers,
        // a busy machine only answers late.
        match tokio::time::timeout(Duration::from_secs(10), call).await {
            Ok(Ok(found)) => break found,
            Ok(Err(_)) => {}
            Err(_) => panic!("a store call hung past its budget during failover"),
        }
        assert!(
            start.elapsed() < Duration::from_secs(45),
            "no failover within 45 s; sentinel log:\n{}",
            set_up.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(found.len(), 1, "the grant written before the failover");
    let new_port = set_up.primary_port().unwrap();
    assert_ne!(new_port, old_port);
    assert_eq!(Some(new_port), set_up.replica.as_ref().map(|r| r.port));

    let second = stores
        .audit
        .append(rollgate::audit::AuditRecord::default())
        .await
        .unwrap();
    assert_eq!(
        second.prev_hash, first.hash,
        "the chain goes on across the failover"
    );
    assert!(stores.audit.verify().await.unwrap().ok);
    stores.grants.put_grant(&grant("after")).await.unwrap();
}
