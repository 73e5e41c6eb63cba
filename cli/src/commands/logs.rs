//! `otto logs`: the masked log of a run's stages, and `-f` to follow it.

use std::io;

use anyhow::{Context as _, anyhow};
use otto_node::api::types::{LogPage, RunDetail};
use otto_node::store::{LogLine, Stream};

use super::run::{path_segment, query_value};
use crate::Failure;
use crate::client::{Client, NodeArgs};

/// How long one follow request waits on the node for new lines, in seconds.
const FOLLOW_WAIT: u64 = 30;

/// Show a run's logs.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  otto logs 01J9ZQ3M5V8R2K4T6W8Y0A2C4E                 # every stage, in plan order
  otto logs 01J9ZQ3M5V8R2K4T6W8Y0A2C4E Build -f        # follow one stage to its end

Secret values never appear: the agent and the node replace them (plain, base64,
URL-encoded, line by line) with ***.")]
pub(crate) struct Args {
    /// The run.
    run: String,
    /// Only this stage.
    stage: Option<String>,
    /// Follow: keep printing new lines until the stage (or every stage) is over.
    #[arg(short, long)]
    follow: bool,
    #[command(flatten)]
    node: NodeArgs,
}

pub(crate) fn run(args: Args) -> Result<(), Failure> {
    let client = args.node.client()?;
    let detail: RunDetail = client.get(&format!("/v1/runs/{}", path_segment(&args.run)))?;
    let run = detail.run.id.to_string();
    let stages: Vec<String> = match &args.stage {
        Some(stage) => {
            if !detail.stages.iter().any(|s| &s.stage.id == stage) {
                let known: Vec<&str> = detail.stages.iter().map(|s| s.stage.id.as_str()).collect();
                return Err(Failure::Error(anyhow!(
                    "run {run} has no stage {stage:?} (its stages: {})",
                    known.join(", ")
                )));
            }
            vec![stage.clone()]
        }
        None => detail.stages.iter().map(|s| s.stage.id.clone()).collect(),
    };
    let prefix = args.stage.is_none();
    let mut out = io::stdout().lock();
    for stage in &stages {
        print_stage(&client, &run, stage, prefix, args.follow, &mut out)?;
    }
    Ok(())
}

/// Prints a stage's log (with `[stage] ` before each line when `prefix`), and with
/// `follow` goes on until the stage is over.
pub(crate) fn print_stage(
    client: &Client,
    run: &str,
    stage: &str,
    prefix: bool,
    follow: bool,
    out: &mut impl io::Write,
) -> anyhow::Result<()> {
    let mut after = 0;
    let mut attempt = None;
    loop {
        let wait = if follow { FOLLOW_WAIT } else { 0 };
        let page: LogPage = client.get_waiting(
            &format!(
                "/v1/runs/{run}/logs?stage={}&after={after}&wait={wait}",
                query_value(stage)
            ),
            wait,
        )?;
        for line in &page.lines {
            if attempt.is_some_and(|a| a != line.attempt) {
                writeln!(
                    out,
                    "{}--- attempt {} ---",
                    stage_prefix(prefix, stage),
                    line.attempt
                )
                .context("writing the log")?;
            }
            attempt = Some(line.attempt);
            writeln!(out, "{}{}", stage_prefix(prefix, stage), format_line(line))
                .context("writing the log")?;
        }
        out.flush().context("writing the log")?;
        after = page.last;
        if page.done || (!follow && page.lines.is_empty()) {
            return Ok(());
        }
    }
}

fn stage_prefix(prefix: bool, stage: &str) -> String {
    if prefix {
        format!("[{stage}] ")
    } else {
        String::new()
    }
}

/// A log line as shown: the node's own lines marked `otto:`, the rest as printed.
pub(crate) fn format_line(line: &LogLine) -> String {
    match line.stream {
        Stream::System => format!("otto: {}", line.text),
        Stream::Stdout | Stream::Stderr => line.text.clone(),
    }
}
