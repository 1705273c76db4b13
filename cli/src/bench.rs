//! `statapp bench`: benchmarks that print wall time and peak memory (resident set high-water mark).
//! Run each in its own process so that the peak belongs to that workload alone; see
//! `tools/bench_foundation.sh` for the side-by-side run with nibabel.

use anyhow::Result;
use statapp_synth::Size;
use statapp_volume::{ReadOptions, read_nifti, write_nifti_image};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Generate one case and write it in the bucket layout.
    Synth {
        #[arg(long, default_value = "large")]
        size: Size,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long)]
        out: PathBuf,
    },
    /// Read a NIfTI file, then write it back (same type and compression) to OUT.
    Nifti { file: PathBuf, out: PathBuf },
}

/// Peak resident memory of this process in MiB (Linux `VmHWM`), if known.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn report(what: &str, seconds: f64) {
    println!("{what:<28} {seconds:>8.2} s");
}

pub fn run(cmd: Command) -> Result<()> {
    match cmd {
        Command::Synth { size, seed, out } => {
            let t = Instant::now();
            let phantom = statapp_synth::generate(seed, 0, size);
            report(
                &format!("generate {size:?} {:?}", phantom.ct.shape_zyx()),
                t.elapsed().as_secs_f64(),
            );
            let t = Instant::now();
            statapp_synth::write_bucket_case(&out, &phantom)?;
            report("write 4 .nii.gz", t.elapsed().as_secs_f64());
        }
        Command::Nifti { file, out } => {
            let t = Instant::now();
            let img = read_nifti(&file, &ReadOptions::default())?;
            report(
                &format!(
                    "read {} {:?}",
                    img.data.type_name(),
                    img.geometry.shape_zyx()
                ),
                t.elapsed().as_secs_f64(),
            );
            let t = Instant::now();
            write_nifti_image(&out, &img)?;
            report("write", t.elapsed().as_secs_f64());
        }
    }
    if let Some(peak) = peak_rss_mib() {
        println!("{:<28} {peak:>8.0} MiB", "peak RSS");
    }
    Ok(())
}
