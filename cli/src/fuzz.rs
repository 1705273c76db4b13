//! `statapp bench fuzz-nifti`: mutation fuzzing of the NIfTI reader. Valid files (the types and
//! layouts uploads use, raw and gzipped) are mutated at random (header fields set to edge values,
//! random bytes overwritten, files cut short or extended, compressed streams damaged) and decoded
//! under a byte budget, with every conversion ingest applies. The reader must return a typed error
//! or a volume for each: a panic is a failure of the run, and the peak memory shows the budget
//! held.

use anyhow::{Result, bail};
use ndarray::Array3;
use statapp_model::rng::Rng;
use statapp_volume::{
    Element, Geometry, ReadOptions, Volume, WriteOptions, encode_nifti, read_nifti_bytes,
};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

/// Header fields (byte offset, width) that size, scale or place data: where mutations aim.
const FIELDS: [(usize, usize); 14] = [
    (0, 4),   // sizeof_hdr
    (40, 2),  // dim[0]
    (42, 2),  // dim[1]
    (44, 2),  // dim[2]
    (46, 2),  // dim[3]
    (48, 2),  // dim[4]
    (70, 2),  // datatype
    (76, 4),  // pixdim[0] (qfac)
    (80, 4),  // pixdim[1]
    (108, 4), // vox_offset
    (112, 4), // scl_slope
    (123, 1), // xyzt_units
    (254, 2), // sform_code
    (280, 4), // srow_x[0]
];

/// Edge values written into a field (little-endian, truncated to its width).
const EDGES: [u32; 14] = [
    0,
    1,
    0xffff_ffff,
    0x7fff,
    0x8000,
    0x7fc0_0000, // NaN
    0x7f80_0000, // +inf
    0xff80_0000, // -inf
    0x4f80_0000, // 4.3e9
    0x3400_0000, // 1.2e-7
    352,
    0x0000_4000,
    0x0000_1000, // 4096: two such axes pass the axis limit but not the budget
    0x0000_1f40, // 8000
];

fn encode<T: Element>(data: Array3<T>, gzip: bool) -> Result<Vec<u8>> {
    let geometry = Geometry::axis_aligned([12, 10, 9], [2.5, 0.8, 0.8], [-10.0, 4.0, 7.0]);
    let volume = Volume::new(data, geometry)?;
    Ok(encode_nifti(&volume, &WriteOptions::default(), gzip))
}

/// The valid starting points: a CT (int16), a label map (uint8), probabilities (float32).
fn seeds() -> Result<Vec<Seed>> {
    let shape = (12, 10, 9);
    let ct = Array3::from_shape_fn(shape, |(z, y, x)| (z * 100 + y * 10 + x) as i16 - 500);
    let labels = Array3::from_shape_fn(shape, |(z, y, x)| ((z + y + x) % 4) as u8);
    let prob = Array3::from_shape_fn(shape, |(z, y, x)| ((z * y + x) % 7) as f32 / 7.0);
    let mut out = Vec::new();
    for gzip in [false, true] {
        for raw in [
            encode(ct.clone(), false)?,
            encode(labels.clone(), false)?,
            encode(prob.clone(), false)?,
        ] {
            out.push(Seed { raw, gzip });
        }
    }
    Ok(out)
}

/// A valid file, kept uncompressed; `gzip`: mutants are compressed like it.
struct Seed {
    raw: Vec<u8>,
    gzip: bool,
}

fn gzip(bytes: &[u8]) -> Result<Vec<u8>> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes)?;
    Ok(e.finish()?)
}

/// One mutation of the uncompressed bytes.
fn mutate_raw(b: &mut Vec<u8>, rng: &mut Rng) {
    match rng.below(6) {
        0 | 1 if b.len() >= 352 => {
            let (offset, width) = FIELDS[rng.below(FIELDS.len())];
            let v = if rng.chance(0.5) {
                EDGES[rng.below(EDGES.len())]
            } else {
                rng.next_u64() as u32
            };
            b[offset..offset + width].copy_from_slice(&v.to_le_bytes()[..width]);
        }
        2 if b.len() >= 352 => {
            for _ in 0..1 + rng.below(8) {
                let i = rng.below(352);
                b[i] = rng.next_u64() as u8;
            }
        }
        3 if !b.is_empty() => {
            for _ in 0..1 + rng.below(32) {
                let i = rng.below(b.len());
                b[i] = rng.next_u64() as u8;
            }
        }
        4 if !b.is_empty() => b.truncate(rng.below(b.len())),
        _ => b.extend((0..rng.below(4096)).map(|_| rng.next_u64() as u8)),
    }
}

/// A mutated file: header and data mutations of the raw bytes (recompressed when the seed was
/// gzipped), and sometimes damage to the compressed stream itself.
fn mutant(seed: &Seed, rng: &mut Rng) -> Result<Vec<u8>> {
    let mut raw = seed.raw.clone();
    for _ in 0..1 + rng.below(3) {
        mutate_raw(&mut raw, rng);
    }
    if !seed.gzip {
        return Ok(raw);
    }
    let mut z = gzip(&raw)?;
    if rng.chance(0.25) {
        let i = rng.below(z.len());
        z[i] = rng.next_u64() as u8;
    }
    Ok(z)
}

/// Decodes as ingest does (image conversions and the label check), under `opts`.
fn decode(bytes: &[u8], opts: &ReadOptions) -> &'static str {
    match read_nifti_bytes(Path::new("fuzz.nii.gz"), bytes, opts) {
        Ok(image) => {
            let _ = image.value_range();
            let _ = image.to_f32();
            match image.to_labels(3) {
                Ok(_) => "ok (labels)",
                Err(_) => "ok (not labels)",
            }
        }
        Err(e) => e.kind(),
    }
}

pub fn run(iterations: usize, seed: u64, budget_mib: u64) -> Result<()> {
    let seeds = seeds()?;
    let opts = ReadOptions {
        max_bytes: budget_mib << 20,
        ..ReadOptions::default()
    };
    let mut rng = Rng::new(seed);
    let mut outcomes: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut panics = Vec::new();
    statapp_stages::memory::reset_peak();
    let start = Instant::now();
    for i in 0..iterations {
        let input = mutant(&seeds[rng.below(seeds.len())], &mut rng)?;
        match std::panic::catch_unwind(|| decode(&input, &opts)) {
            Ok(kind) => *outcomes.entry(kind).or_default() += 1,
            Err(_) => panics.push(i),
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let peak = statapp_stages::memory::peak_rss_bytes().map_or(0.0, |b| b as f64 / 1048576.0);
    println!(
        "fuzz-nifti: {iterations} inputs (seed {seed}, budget {budget_mib} MiB) in {secs:.1} s \
         ({:.0}/s), peak RSS {peak:.0} MiB, {} panic(s)",
        iterations as f64 / secs,
        panics.len()
    );
    for (kind, n) in &outcomes {
        println!("  {kind:<22} {n}");
    }
    if !panics.is_empty() {
        bail!("the reader panicked on inputs {panics:?} (rerun with the same --seed)");
    }
    Ok(())
}
