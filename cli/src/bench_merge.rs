//! `statapp bench merge`: metric rows arriving as events, folded into `metrics/combined.csv` by
//! one merge worker (the template's merge queue runs at most two), as the pipeline does. Prints,
//! per size, the rows, the commits, the rows parsed and rendered by all commits together (the
//! merge work), and the wall time: the work grows as n log n when commits coalesce, not as n^2.

use anyhow::{Result, ensure};
use statapp_pipeline::queue::SystemClock;
use statapp_pipeline::{DirStore, JobQueue, MemQueue};
use statapp_stages::score::{MergeSettings, Merged, handle_merge, put_row};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Rows per case in the pipeline: 9 models and 4 ensembles.
pub const ROWS_PER_CASE: usize = 13;

/// One size's figures.
#[derive(Debug, Default)]
struct Figures {
    rows: usize,
    commits: usize,
    work_rows: usize,
    merge_seconds: f64,
    wall_seconds: f64,
}

/// A row of the combined CSV's shape with values that differ per row.
fn row(case: &str, name: &str, i: usize) -> String {
    let header = statapp_metrics::csv_header();
    let mut fields = vec![case.to_string(), name.to_string()];
    let values = (2..header.len()).map(|c| format!("{:.6}", ((i * 31 + c) % 997) as f64 / 997.0));
    fields.extend(values);
    format!("{}\n{}\n", header.join(","), fields.join(","))
}

/// `n` rows written by a producer thread, each followed by a merge request, while one worker
/// drains the merge queue in batches of 10.
fn measure(n: usize, window: Duration) -> Result<Figures> {
    let dir = tempfile::tempdir()?;
    let store = DirStore::open(dir.path(), "bench")?;
    let queue = MemQueue::new("merge", Arc::new(SystemClock));
    let settings = MergeSettings { window };
    let start = Instant::now();
    let done = std::sync::atomic::AtomicBool::new(false);
    let mut fig = Figures::default();
    std::thread::scope(|s| -> Result<()> {
        let producer = s.spawn(|| -> Result<()> {
            for i in 0..n {
                let (case, name) = (
                    format!("case_{:05}", i / ROWS_PER_CASE),
                    format!("model_{:02}", i % ROWS_PER_CASE),
                );
                put_row(&store, &case, &name, &row(&case, &name, i))?;
                queue.send(
                    &statapp_pipeline::Job::Merge(statapp_pipeline::MergeJob::default()).to_json(),
                )?;
            }
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        });
        loop {
            let batch = queue.receive(10, Duration::from_secs(900))?;
            if batch.is_empty() {
                if done.load(std::sync::atomic::Ordering::SeqCst) && queue.approximate_len()? == 0 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            for d in batch {
                let t = Instant::now();
                let statapp_pipeline::Job::Merge(job) = statapp_pipeline::Job::from_json(&d.body)?
                else {
                    anyhow::bail!("not a merge job: {}", d.body);
                };
                let merged = handle_merge(&job, &store, &queue, &settings, SystemTime::now())?;
                fig.merge_seconds += t.elapsed().as_secs_f64();
                if let Merged::Committed { rows, applied } = merged {
                    fig.commits += 1;
                    fig.work_rows += rows + applied;
                    fig.rows = rows;
                }
                queue.delete(&d.receipt)?;
            }
        }
        producer
            .join()
            .map_err(|_| anyhow::anyhow!("the producer panicked"))?
    })?;
    fig.wall_seconds = start.elapsed().as_secs_f64();
    ensure!(
        fig.rows == n,
        "the combined CSV has {} rows, expected {n}",
        fig.rows
    );
    Ok(fig)
}

/// Prints the figures of every size.
pub fn run(sizes: &[usize], window_s: f64) -> Result<()> {
    let window = Duration::try_from_secs_f64(window_s)?;
    println!("merge window {window_s} s, one merge worker, batches of 10 requests");
    println!(
        "{:>8} {:>8} {:>12} {:>14} {:>10} {:>10}",
        "rows", "commits", "work rows", "work/(n log2n)", "merge s", "wall s"
    );
    for &n in sizes {
        let f = measure(n, window)?;
        let nlogn = n as f64 * (n.max(2) as f64).log2();
        println!(
            "{:>8} {:>8} {:>12} {:>14.3} {:>10.2} {:>10.2}",
            f.rows,
            f.commits,
            f.work_rows,
            f.work_rows as f64 / nlogn,
            f.merge_seconds,
            f.wall_seconds
        );
    }
    Ok(())
}
