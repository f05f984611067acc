//! A private PostgreSQL server for the chaos scenarios: its own data folder, port and
//! socket folder, so a scenario may stop, restart or starve it without touching the
//! server other tests share. Started as the `postgres` system user when the harness
//! runs as root (the server refuses to run as root).

use crate::{unique_name, Error};
use std::path::{Path, PathBuf};
use std::process::Command;

/// How a server is stopped: `Immediate` is a crash as far as clients and recovery are
/// concerned; `Fast` rolls back and disconnects every session, then shuts down cleanly.
#[derive(Debug, Clone, Copy)]
pub enum StopMode {
    /// No shutdown checkpoint; crash recovery on the next start.
    Immediate,
    /// Sessions disconnected, a clean shutdown.
    Fast,
}

/// A PostgreSQL server in a temporary folder, removed with it when dropped.
#[derive(Debug)]
pub struct PrivatePostgres {
    root: PathBuf,
    port: u16,
    max_connections: u32,
    as_postgres_user: bool,
    bin: PathBuf,
}

impl PrivatePostgres {
    /// Makes a new cluster (`initdb`, trust authentication, superuser `postgres`) and
    /// starts it on a free loopback port with at most `max_connections` sessions.
    pub fn start(max_connections: u32) -> Result<PrivatePostgres, Error> {
        let (bin, port, as_postgres_user) = (server_binaries()?, free_port()?, running_as_root()?);
        let root = std::env::temp_dir().join(unique_name("warren-chaos-pg"));
        std::fs::create_dir_all(&root)?;
        // From here on the folder is removed (and a started server stopped) on drop.
        let server = PrivatePostgres {
            port,
            max_connections,
            as_postgres_user,
            bin,
            root,
        };
        if as_postgres_user {
            run(Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(&server.root))?;
        }
        server.run_tool(
            "initdb",
            &[
                "-D",
                &server.data().display().to_string(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )?;
        server.resume()?;
        Ok(server)
    }

    /// Starts the server again after [`PrivatePostgres::stop`]; waits until it accepts
    /// connections.
    pub fn resume(&self) -> Result<(), Error> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections={}",
            self.port,
            self.root.display(),
            self.max_connections
        );
        self.run_tool(
            "pg_ctl",
            &[
                "-D",
                &self.data().display().to_string(),
                "-l",
                &self.log_path().display().to_string(),
                "-w",
                "-t",
                "120",
                "-o",
                &options,
                "start",
            ],
        )
    }

    /// Stops the server and waits until it has.
    pub fn stop(&self, mode: StopMode) -> Result<(), Error> {
        let mode = match mode {
            StopMode::Immediate => "immediate",
            StopMode::Fast => "fast",
        };
        self.run_tool(
            "pg_ctl",
            &[
                "-D",
                &self.data().display().to_string(),
                "-m",
                mode,
                "-w",
                "stop",
            ],
        )
    }

    /// The URL of database `db` as user `user`, with `application_name` set when given
    /// (the harness's own sessions carry one, so the fault scripts can spare them).
    pub fn url(&self, user: &str, db: &str, application_name: Option<&str>) -> String {
        let mut url = format!("postgres://{user}@127.0.0.1:{}/{db}", self.port);
        if let Some(name) = application_name {
            url.push_str(&format!("?application_name={name}"));
        }
        url
    }

    /// The server's log file.
    pub fn log_path(&self) -> PathBuf {
        self.root.join("server.log")
    }

    fn data(&self) -> PathBuf {
        self.root.join("data")
    }

    fn run_tool(&self, tool: &str, args: &[&str]) -> Result<(), Error> {
        let program = self.bin.join(tool);
        let mut cmd = if self.as_postgres_user {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(&program);
            cmd
        } else {
            Command::new(&program)
        };
        cmd.args(args).current_dir(&self.root);
        run(&mut cmd).map_err(|e| format!("{tool} {}: {e}", args.join(" ")).into())
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self.stop(StopMode::Immediate);
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Runs `cmd`, turning a failure into an error carrying its output.
fn run(cmd: &mut Command) -> Result<(), Error> {
    let out = cmd.output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "exited with {}: {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
        .into())
    }
}

fn running_as_root() -> Result<bool, Error> {
    let out = Command::new("id").arg("-u").output()?;
    Ok(String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// A loopback port nothing listens on right now.
fn free_port() -> Result<u16, Error> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// The folder holding `initdb` and `pg_ctl`: `$WARREN_CHAOS_PG_BIN`, else the folder of
/// `pg_ctl` on the `PATH`, else the newest `/usr/lib/postgresql/*/bin`.
fn server_binaries() -> Result<PathBuf, Error> {
    if let Some(dir) = std::env::var_os("WARREN_CHAOS_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    if let Some(dir) = on_path.iter().find(|dir| has_tools(dir)) {
        return Ok(dir.clone());
    }
    // Newest major version first: by number, not by text ("9.6" < "16").
    let mut versions: Vec<(f64, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dir| {
            dir.flatten()
                .filter_map(|e| {
                    let version = e.file_name().to_str()?.parse::<f64>().ok()?;
                    Some((version, e.path().join("bin")))
                })
                .collect()
        })
        .unwrap_or_default();
    versions.sort_by(|a, b| b.0.total_cmp(&a.0));
    versions
        .into_iter()
        .map(|(_, dir)| dir)
        .find(|dir| has_tools(dir))
        .ok_or_else(|| {
            "initdb and pg_ctl not found (on the PATH, under /usr/lib/postgresql, or in \
             $WARREN_CHAOS_PG_BIN): the chaos scenarios start a PostgreSQL server of their own"
                .into()
        })
}

fn has_tools(dir: &Path) -> bool {
    dir.join("initdb").is_file() && dir.join("pg_ctl").is_file()
}

/// Whether a private server can be started here (the tools are installed).
pub fn available() -> bool {
    server_binaries().is_ok()
}
