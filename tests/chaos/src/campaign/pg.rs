//! The campaign's own PostgreSQL cluster: `initdb` and `pg_ctl` from the newest server under
//! `/usr/lib/postgresql`, as the `postgres` user, in a directory of its own on a free port, so
//! that restarting it and terminating its connections disturb nothing else on the machine.

use std::path::{Path, PathBuf};
use std::process::Command;

use withings_oauth_sql::sqlx::{self, Connection as _};

/// Stopped and removed when dropped.
pub(crate) struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    destroyed: bool,
}

fn run(command: &mut Command, what: &str) -> Result<(), String> {
    let output = command
        .output()
        .map_err(|e| format!("{what}: could not run it ({e})"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

fn as_postgres(bin: &Path, tool: &str) -> Command {
    let mut command = Command::new("runuser");
    command
        .args(["-u", "postgres", "--"])
        .arg(bin.join(tool))
        .current_dir("/");
    command
}

impl Cluster {
    /// Creates and starts a cluster with a database `chaos`.
    pub(crate) async fn start(port: u16) -> Result<Self, String> {
        let versions = std::fs::read_dir("/usr/lib/postgresql").map_err(|_| {
            "no PostgreSQL server under /usr/lib/postgresql: install the `postgresql` package (`source .ci/postgres.sh` does)".to_owned()
        })?;
        let bin = versions
            .filter_map(Result::ok)
            .filter_map(|e| {
                let version: u32 = e.file_name().to_str()?.parse().ok()?;
                Some((version, e.path().join("bin")))
            })
            .max()
            .map(|(_, bin)| bin)
            .filter(|bin| bin.join("initdb").exists())
            .ok_or("no initdb under /usr/lib/postgresql/*/bin")?;
        let dir = std::env::temp_dir().join(format!("withings-chaos-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        run(
            Command::new("chown").args(["postgres:postgres"]).arg(&dir),
            "chown of the cluster's directory to postgres",
        )?;
        let cluster = Self {
            bin,
            dir,
            port,
            destroyed: false,
        };
        run(
            as_postgres(&cluster.bin, "initdb")
                .args(["-A", "trust", "-U", "postgres", "-N", "-D"])
                .arg(cluster.dir.join("data")),
            "initdb",
        )?;
        cluster.pg_ctl("start")?;
        let mut connection = cluster.admin().await?;
        sqlx::query("CREATE DATABASE chaos")
            .execute(&mut connection)
            .await
            .map_err(|e| format!("CREATE DATABASE: {e}"))?;
        Ok(cluster)
    }

    fn pg_ctl(&self, action: &str) -> Result<(), String> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200",
            self.port,
            self.dir.display()
        );
        run(
            as_postgres(&self.bin, "pg_ctl")
                .args(["-w", "-m", "fast", "-t", "60", "-D"])
                .arg(self.dir.join("data"))
                .arg("-l")
                .arg(self.dir.join("server.log"))
                .args(["-o", &options, action]),
            &format!("pg_ctl {action}"),
        )
    }

    async fn admin(&self) -> Result<sqlx::PgConnection, String> {
        let url = format!("postgres://postgres@127.0.0.1:{}/postgres", self.port);
        sqlx::PgConnection::connect(&url)
            .await
            .map_err(|e| format!("connecting to the campaign's cluster: {e}"))
    }

    /// The database every instance shares.
    pub(crate) fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/chaos", self.port)
    }

    /// `pg_ctl restart`: every connection is cut, the server is down for a moment.
    pub(crate) fn restart(&self) -> Result<(), String> {
        self.pg_ctl("restart")
    }

    /// `pg_terminate_backend` of every connection to the campaign's database: how many.
    pub(crate) async fn terminate_connections(&self) -> Result<u64, String> {
        let mut connection = self.admin().await?;
        let rows = sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = 'chaos' AND pid <> pg_backend_pid()",
        )
        .fetch_all(&mut connection)
        .await
        .map_err(|e| format!("pg_terminate_backend: {e}"))?;
        Ok(rows.len() as u64)
    }

    /// Stops the server and removes its directory.
    pub(crate) fn destroy(&mut self) {
        if std::mem::replace(&mut self.destroyed, true) {
            return;
        }
        if let Err(e) = self.pg_ctl("stop") {
            eprintln!("campaign: {e}");
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.destroy();
    }
}
