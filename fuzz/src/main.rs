//! `cargo run -p pathgate-fuzz --release -- [--seconds N] [--seed S] [TARGET...]`: runs each
//! target (all by default) for a fixed time and prints its figures (docs/reliability.md).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use pathgate_fuzz::{Campaign, Figures, Target};

#[derive(Debug, Parser)]
#[command(about = "Property-based fuzzing of pathgate's request parsers")]
struct Args {
    /// Seconds per target.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Seed of the first target's generator (the next target's is seed + 1, ...).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// An input slower than this many milliseconds is reported over the bound.
    #[arg(long, default_value_t = 100)]
    bound_ms: u64,
    /// One input running this many seconds is a stall: it is written out and the run stops.
    #[arg(long, default_value_t = 10)]
    stall_seconds: u64,
    /// Where crashing and stalling inputs are written.
    #[arg(long, default_value = "target/fuzz-crashes")]
    crash_dir: PathBuf,
    /// Targets to run (default: all): request_info, query, delete_options_json, ...
    targets: Vec<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let targets: Vec<Target> = if args.targets.is_empty() {
        Target::ALL.to_vec()
    } else {
        let mut targets = Vec::new();
        for name in &args.targets {
            let Some(target) = Target::from_name(name) else {
                eprintln!("pathgate-fuzz: no target {name:?}");
                return ExitCode::FAILURE;
            };
            targets.push(target);
        }
        targets
    };
    // Panics are findings counted in the figures; their default report would flood stderr.
    std::panic::set_hook(Box::new(|_| {}));
    println!("| target | seconds | executions | per second | crashes | slowest (µs) | slowest input (bytes) | over {} ms |", args.bound_ms);
    println!("|---|---|---|---|---|---|---|---|");
    let mut crashes = 0;
    for (i, target) in targets.into_iter().enumerate() {
        let campaign = Campaign {
            target,
            duration: Duration::from_secs(args.seconds),
            seed: args.seed + i as u64,
            bound: Duration::from_millis(args.bound_ms),
            crash_dir: args.crash_dir.clone(),
        };
        match campaign.run(Duration::from_secs(args.stall_seconds)) {
            Ok(figures) => {
                print_row(target, &figures);
                crashes += figures.crash_count;
            }
            Err(error) => {
                eprintln!("pathgate-fuzz: {}: {error}", target.name());
                return ExitCode::FAILURE;
            }
        }
    }
    if crashes > 0 {
        eprintln!(
            "pathgate-fuzz: {crashes} crashing inputs in {}",
            args.crash_dir.display()
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn print_row(target: Target, figures: &Figures) {
    let seconds = figures.elapsed.as_secs_f64();
    println!(
        "| {} | {:.0} | {} | {:.0} | {} | {} | {} | {} |",
        target.name(),
        seconds,
        figures.executions,
        figures.executions as f64 / seconds,
        figures.crash_count,
        figures.slowest.as_micros(),
        figures.slowest_len,
        figures.over_bound,
    );
    for (input, message) in &figures.crashes {
        eprintln!(
            "  crash: {message}: {:?}",
            String::from_utf8_lossy(&input[..input.len().min(200)])
        );
    }
}
