//! PostgreSQL: a server of this machine's installation, started for the run
//! in a temporary directory (initdb, then `pg_ctl start` on a free loopback
//! port) and stopped, its directory removed, when [`PgServer`] is dropped,
//! also after a failure. The store is the `events` table of Marten, esrs
//! and eventually (see [`SCHEMA`]); an append checks the expected version in
//! its transaction.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use postgres::error::SqlState;
use postgres::{Client, NoTls, Statement};
use uuid::Uuid;

use super::{READ_EVENT_DATA, Session, Store, event_id};
use crate::workload::Result;

/// The table, as Marten, esrs and eventually lay it out.
pub const SCHEMA: &str = "DROP TABLE IF EXISTS events; \
    CREATE TABLE events (global_seq BIGSERIAL PRIMARY KEY, stream_id TEXT NOT NULL, version BIGINT NOT NULL, \
    event_id UUID NOT NULL, type TEXT NOT NULL, data JSONB NOT NULL, metadata JSONB, \
    created TIMESTAMPTZ DEFAULT now(), UNIQUE (stream_id, version))";

/// Settings given to the server beyond the defaults.
pub const SERVER_SETTINGS: &str = "shared_buffers=1GB (default 128MB), listen_addresses=127.0.0.1, fsync=on \
    (default); synchronous_commit set per session";

/// A running server, stopped on drop.
pub struct PgServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    /// Run the server's commands as this user (initdb refuses root).
    user: Option<String>,
    /// `SELECT version()`.
    pub version: String,
}

/// Where initdb and pg_ctl are: on the PATH, or Debian's directory.
fn bin_dir() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("initdb").is_file() && dir.join("pg_ctl").is_file() {
                return Ok(dir);
            }
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|e| {
            format!(
                "PostgreSQL not found (no initdb on the PATH, /usr/lib/postgresql: {e}); apt-get install postgresql"
            )
        })?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|d| d.join("initdb").is_file())
        .collect();
    found.sort();
    found.pop().ok_or_else(|| "PostgreSQL not found: no initdb in /usr/lib/postgresql/*/bin".into())
}

fn id_of(user: &str, flag: &str) -> Result<u32> {
    let out = Command::new("id").args([flag, user]).output()?;
    if !out.status.success() {
        return Err(format!("no user {user} to run PostgreSQL as (running as root)").into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
}

impl PgServer {
    /// Initialises a cluster in a temporary directory under `parent` and
    /// starts it.
    pub fn start(parent: Option<&Path>) -> Result<PgServer> {
        let bin = bin_dir()?;
        let mut builder = tempfile::Builder::new();
        builder.prefix("annal-compare-pg-");
        let dir = match parent {
            Some(p) => builder.tempdir_in(p)?,
            None => builder.tempdir()?,
        };
        let user = if rustix::process::geteuid().is_root() {
            let user = "postgres".to_string();
            std::os::unix::fs::chown(dir.path(), Some(id_of(&user, "-u")?), Some(id_of(&user, "-g")?))?;
            Some(user)
        } else {
            None
        };
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut server = PgServer { dir, bin, port, user, version: String::new() };
        let data = server.data();
        server.run("initdb", &["-D", &data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"])?;
        let options = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c shared_buffers=1GB",
            server.dir.path().display()
        );
        let log = server.dir.path().join("server.log").display().to_string();
        if let Err(e) = server.run("pg_ctl", &["-D", &data, "-l", &log, "-w", "-t", "60", "-o", &options, "start"]) {
            let tail = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(format!("{e}; server log: {}", tail.trim()).into());
        }
        let mut client = server.connect()?;
        server.version = client.query_one("SELECT version()", &[])?.get(0);
        Ok(server)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn run(&self, program: &str, args: &[&str]) -> Result<()> {
        let exe = self.bin.join(program);
        let mut cmd = match &self.user {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        let out = cmd.args(args).current_dir(self.dir.path()).output()?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("{program} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim()).into())
        }
    }

    /// A new connection (TCP on the loopback interface).
    pub fn connect(&self) -> Result<Client> {
        let config = format!("host=127.0.0.1 port={} user=postgres dbname=postgres", self.port);
        Ok(Client::connect(&config, NoTls)?)
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let data = self.data();
        if let Err(e) = self.run("pg_ctl", &["-D", &data, "-m", "fast", "-w", "-t", "60", "stop"]) {
            eprintln!("warning: stopping PostgreSQL: {e}");
        }
        // The TempDir removes the directory after this.
    }
}

/// The `events` table of a running server; emptied (recreated) when opened.
pub struct PgStore<'a> {
    server: &'a PgServer,
    durable: bool,
}

impl<'a> PgStore<'a> {
    /// Recreates the table, and checkpoints so that the last run's WAL is
    /// written out before this one.
    pub fn open(server: &'a PgServer, durable: bool) -> Result<PgStore<'a>> {
        let mut client = server.connect()?;
        client.batch_execute(SCHEMA)?;
        client.batch_execute("CHECKPOINT")?;
        Ok(PgStore { server, durable })
    }
}

/// `INSERT` of `n` events of one stream: `$1` stream, `$2` type, `$3` data,
/// then a (version, event id) pair per event.
fn insert_sql(n: usize) -> String {
    let rows: Vec<String> =
        (0..n).map(|i| format!("($1, ${}, ${}, $2, $3::text::jsonb)", 4 + 2 * i, 5 + 2 * i)).collect();
    format!("INSERT INTO events (stream_id, version, event_id, type, data) VALUES {}", rows.join(", "))
}

impl Store for PgStore<'_> {
    fn session(&self) -> Result<Box<dyn Session + Send + '_>> {
        let mut client = self.server.connect()?;
        client.batch_execute(if self.durable {
            "SET synchronous_commit = on"
        } else {
            "SET synchronous_commit = off"
        })?;
        let max = client.prepare("SELECT max(version) FROM events WHERE stream_id = $1")?;
        let read = client.prepare(
            "SELECT global_seq, version, event_id, type, data::text, metadata::text FROM events \
             WHERE stream_id = $1 ORDER BY version LIMIT 100",
        )?;
        Ok(Box::new(PgSession { client, max, read, inserts: Vec::new(), ids: super::next_id_seed() }))
    }

    fn fill(&mut self, streams: u64, per_stream: u64, singles: u64) -> Result<()> {
        let mut client = self.server.connect()?;
        client.batch_execute("SET synchronous_commit = off")?;
        // Single i goes after round floor(((i + 1) * per_stream - 1) / singles): the first round v with
        // i < singles * (v + 1) / per_stream, where the other engines' loops write it.
        client.execute(
            "INSERT INTO events (stream_id, version, event_id, type, data) \
             SELECT stream_id, version, gen_random_uuid(), 'OrderPlaced', $1::text::jsonb FROM ( \
               SELECT 'order-' || s AS stream_id, v AS version, v AS round, 0 AS part, s AS n \
               FROM generate_series(0, $2::bigint - 1) v, generate_series(0, $3::bigint - 1) s \
               UNION ALL \
               SELECT 'cart-' || i, 0, ((i + 1) * $2::bigint - 1) / $4::bigint, 1, i \
               FROM generate_series(0, $5::bigint - 1) i \
             ) x ORDER BY round, part, n",
            &[&READ_EVENT_DATA, &(per_stream as i64), &(streams as i64), &(singles.max(1) as i64), &(singles as i64)],
        )?;
        client.batch_execute("VACUUM ANALYZE events")?;
        client.batch_execute("CHECKPOINT")?;
        Ok(())
    }

    fn count(&self) -> Result<u64> {
        let n: i64 = self.server.connect()?.query_one("SELECT count(*) FROM events", &[])?.get(0);
        Ok(u64::try_from(n)?)
    }
}

struct PgSession {
    client: Client,
    max: Statement,
    read: Statement,
    /// Prepared inserts by event count.
    inserts: Vec<(usize, Statement)>,
    ids: u128,
}

impl Session for PgSession {
    fn append(&mut self, stream: &str, expected: Option<u64>, n: usize, data: &str) -> Result<()> {
        let insert = match self.inserts.iter().find(|(k, _)| *k == n) {
            Some((_, s)) => s.clone(),
            None => {
                let s = self.client.prepare(&insert_sql(n))?;
                self.inserts.push((n, s.clone()));
                s
            }
        };
        let first = expected.map_or(0, |v| v + 1) as i64;
        let versions: Vec<i64> = (first..first + n as i64).collect();
        let ids: Vec<Uuid> = (0..n).map(|_| event_id(&mut self.ids)).collect();
        let mut params: Vec<&(dyn postgres::types::ToSql + Sync)> = vec![&stream, &"OrderPlaced", &data];
        for (v, id) in versions.iter().zip(&ids) {
            params.push(v);
            params.push(id);
        }
        let mut tx = self.client.transaction()?;
        let current: Option<i64> = tx.query_one(&self.max, &[&stream])?.get(0);
        if current != expected.map(|v| v as i64) {
            return Err(format!("{stream}: expected version {expected:?}, found {current:?}").into());
        }
        match tx.execute(&insert, &params) {
            Ok(_) => {}
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                return Err(format!("{stream}: concurrency conflict (unique violation)").into());
            }
            Err(e) => return Err(e.into()),
        }
        tx.commit()?;
        Ok(())
    }

    fn read_stream(&mut self, stream: &str) -> Result<usize> {
        let rows = self.client.query(&self.read, &[&stream])?;
        for (i, row) in rows.iter().enumerate() {
            let version: i64 = row.get(1);
            let data: &str = row.get(4);
            if version != i as i64 || data.is_empty() {
                return Err(format!("{stream}: row {i} has version {version}").into());
            }
            let _: Uuid = row.get(2);
            let _: &str = row.get(3);
            let _: Option<&str> = row.get(5);
        }
        Ok(rows.len())
    }

    fn catch_up(&mut self, _total: u64) -> Result<u64> {
        let page = self.client.prepare(
            "SELECT global_seq, stream_id, version, event_id, type, data::text, metadata::text FROM events \
             WHERE global_seq > $1 ORDER BY global_seq LIMIT 1000",
        )?;
        let (mut after, mut n) = (0i64, 0u64);
        loop {
            let rows = self.client.query(&page, &[&after])?;
            let Some(last) = rows.last() else { return Ok(n) };
            after = last.get(0);
            for row in &rows {
                let _: &str = row.get(1);
                let _: &str = row.get(5);
            }
            n += rows.len() as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn insert_of_two_events() {
        assert_eq!(
            super::insert_sql(2),
            "INSERT INTO events (stream_id, version, event_id, type, data) VALUES \
             ($1, $4, $5, $2, $3::text::jsonb), ($1, $6, $7, $2, $3::text::jsonb)"
        );
    }
}
