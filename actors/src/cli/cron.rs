//! `warren cron next`: the next fire times of a cron mask.

use super::Failure;
use chrono::{DateTime, SecondsFormat, Utc};
use clap::{Args, Subcommand};
use warren::cron::{CronMask, ZoneSpec};

/// Cron commands.
#[derive(Debug, Subcommand)]
pub enum CronCommand {
    /// Print the next fire times of MASK as RFC 3339 UTC instants, one per line.
    Next(NextArgs),
}

/// Arguments of `warren cron next`.
#[derive(Debug, Args)]
pub struct NextArgs {
    /// A 5-field crontab mask (minute hour day-of-month month day-of-week) or a macro
    /// such as @daily.
    pub mask: String,
    /// Zone the mask is read in: UTC (default), an IANA name such as Europe/Amsterdam,
    /// or `maintenance` (UTC shifted by WARREN_MAINTENANCE_OFFSET minutes).
    #[arg(long, default_value = "UTC")]
    pub tz: String,
    /// Compute fire times strictly after this instant (RFC 3339); default: now.
    #[arg(long)]
    pub after: Option<String>,
    /// How many fire times to print.
    #[arg(long, default_value_t = 1)]
    pub count: usize,
    /// Print a JSON array of `{"at": RFC 3339, "ms": epoch ms}` instead of lines.
    #[arg(long)]
    pub json: bool,
}

/// Prints the fire times.
pub async fn run(
    cmd: CronCommand,
    database: Option<&str>,
    configured: Option<u32>,
) -> Result<(), Failure> {
    let CronCommand::Next(args) = cmd;
    let mask: CronMask = args
        .mask
        .parse()
        .map_err(|e: warren::cron::CronError| Failure::Invalid(e.to_string()))?;
    let spec = ZoneSpec::parse(&args.tz).map_err(|e| Failure::Invalid(e.to_string()))?;
    let after = match &args.after {
        None => Utc::now(),
        Some(text) => DateTime::parse_from_rfc3339(text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| {
                Failure::Invalid(format!(
                    "invalid --after '{text}': {e} (expected RFC 3339, e.g. 2026-03-30T13:00:00Z)"
                ))
            })?,
    };
    if args.count == 0 || args.count > 10_000 {
        return Err(Failure::Invalid(format!(
            "invalid --count {}: use 1 to 10000",
            args.count
        )));
    }
    let offset = match spec {
        ZoneSpec::Maintenance => maintenance_offset(configured, database).await?,
        _ => 0,
    };
    let zone = spec.resolve(offset);
    let times = mask.upcoming(after, &zone, args.count);
    if args.json {
        let items: Vec<serde_json::Value> = times
            .iter()
            .map(|t| {
                serde_json::json!({
                    "at": t.to_rfc3339_opts(SecondsFormat::Secs, true),
                    "ms": t.timestamp_millis(),
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(items));
    } else {
        for t in &times {
            println!("{}", t.to_rfc3339_opts(SecondsFormat::Secs, true));
        }
    }
    if times.len() < args.count {
        eprintln!(
            "warren: only {} fire time(s) exist after {}",
            times.len(),
            after.to_rfc3339_opts(SecondsFormat::Secs, true)
        );
    }
    Ok(())
}

/// The maintenance offset: the one `configured` (WARREN_MAINTENANCE_OFFSET), else
/// the one stored in the database named by --database.
async fn maintenance_offset(
    configured: Option<u32>,
    database: Option<&str>,
) -> Result<u32, Failure> {
    if let Some(minutes) = configured {
        return Ok(minutes);
    }
    let Some(url) = database else {
        return Err(Failure::Invalid(
            "the maintenance zone needs WARREN_MAINTENANCE_OFFSET (minutes, 0-1439), or \
             --database to read the offset the service stored there"
                .into(),
        ));
    };
    let store = warren::store::Store::open(url).await?;
    Ok(store.maintenance_offset(None).await?)
}
