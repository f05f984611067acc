//! `warren tasks retry|cancel|delete` given filter options instead of an id: every
//! matching task, in batches of short transactions (`Store::bulk`), after saying how
//! many match and asking, or with `--yes`.

use super::filter_args::FilterArgs;
use super::task_admin::{store_failure, to_json};
use super::Failure;
use std::io::{BufRead, IsTerminal, Write};
use warren::store::{BulkAction, BulkOptions, BulkReport, Store};
use warren::task::TaskId;

/// Runs a bulk action from the command line.
pub async fn run(
    database: &str,
    action: BulkAction,
    filter: &FilterArgs,
    yes: bool,
    json: bool,
) -> Result<(), Failure> {
    if filter.text().is_empty() {
        return Err(Failure::Invalid(format!(
            "give a task id, or filter options saying which tasks to {action}: --type, --state, --from, --until, --data, --data-contains, --error-contains (--state all for every task)"
        )));
    }
    let mut filter = filter.filter()?;
    let store = Store::open(database).await?;
    let matching = store.count(&filter).await.map_err(store_failure)?;
    // What was counted is what is acted on: no task scheduled from now on.
    let newest = store
        .newest_matching(&filter)
        .await
        .map_err(store_failure)?;
    filter.before_id = Some(TaskId(newest.map_or(0, |id| id.0) + 1));
    if !yes && matching > 0 {
        confirm(action, matching)?;
    }
    let options = BulkOptions {
        reason: "cancelled in bulk from the command line".to_string(),
        ..BulkOptions::default()
    };
    let report = store
        .bulk(action, &filter, &options)
        .await
        .map_err(store_failure)?;
    if json {
        println!("{}", to_json(&report)?);
    } else {
        print_report(&report);
    }
    Ok(())
}

/// Asks on the terminal whether to act on `matching` tasks; without a terminal, refuses
/// and says to add `--yes`.
fn confirm(action: BulkAction, matching: i64) -> Result<(), Failure> {
    let tasks = plural(matching as u64);
    if !std::io::stdin().is_terminal() {
        return Err(Failure::Invalid(format!(
            "{tasks} match; add --yes to {action} them (nothing was changed)"
        )));
    }
    eprint!("{tasks} match. {} them? [y/N] ", capitalized(action.verb()));
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| Failure::Error(format!("reading the answer: {e}")))?;
    match answer.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Ok(()),
        _ => Err(Failure::Invalid("nothing was changed".to_string())),
    }
}

fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// "1 task" or "3,000 tasks".
fn plural(n: u64) -> String {
    let digits = n.to_string();
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    match n {
        1 => "1 task".to_string(),
        _ => format!("{grouped} tasks"),
    }
}

fn print_report(report: &BulkReport) {
    let done = match report.action {
        BulkAction::Retry => "retried",
        BulkAction::Cancel => "cancelled",
        BulkAction::Delete => "deleted",
    };
    println!(
        "{done} {} of {} matching",
        plural(report.changed),
        report.matched
    );
    if !report.skipped.is_empty() {
        let by_state: Vec<String> = report
            .skipped
            .iter()
            .map(|(state, n)| format!("{n} {state}"))
            .collect();
        println!(
            "left alone, as no {} applies in their state: {}",
            report.action,
            by_state.join(", ")
        );
    }
    if report.moved_on > 0 {
        println!(
            "left alone, as their state changed while this ran: {}",
            plural(report.moved_on)
        );
    }
    if report.refused > 0 {
        println!("refused: {}", plural(report.refused));
        for reason in &report.refusals {
            println!("  {reason}");
        }
    }
    if !report.cancelled_running.is_empty() {
        println!(
            "{} were running: their nodes stop them at their next lease renewal",
            plural(report.cancelled_running.len() as u64)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_read_with_thousands_separated() {
        assert_eq!(plural(1), "1 task");
        assert_eq!(plural(0), "0 tasks");
        assert_eq!(plural(999), "999 tasks");
        assert_eq!(plural(3000), "3,000 tasks");
        assert_eq!(plural(1_234_567), "1,234,567 tasks");
        assert_eq!(capitalized("retry"), "Retry");
    }
}
