//! `statapp preview`: one axial slice of a case, CT in a soft-tissue window, with the contours of
//! the three annotators (1 red, 2 green, 3 blue), for eyeballing phantoms and predictions; with
//! `--map`, a map on the image's grid (an ensemble's entropy or mutual information, a probability)
//! blended over the CT in a heat scale.

use anyhow::{Context, Result, bail};
use ndarray::{Array2, Axis};
use statapp_volume::{ReadOptions, read_nifti};
use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Case directory holding image.nii.gz and annotation_{1,2,3}.nii.gz.
    case_dir: PathBuf,
    /// Axial slice index (default: the slice where annotator 1 has the most pancreas).
    #[arg(long)]
    slice: Option<usize>,
    /// Output PNG.
    #[arg(long, short, default_value = "preview.png")]
    out: PathBuf,
    /// Upscaling factor (default: about 512 pixels wide).
    #[arg(long)]
    scale: Option<usize>,
    /// Window centre and width in HU.
    #[arg(long, num_args = 2, default_values_t = [40.0, 400.0])]
    window: Vec<f32>,
    /// A map to overlay (same grid as the image), e.g.
    /// ensembles/ensemble_all/<case>/mutual_information.nii.gz.
    #[arg(long)]
    map: Option<PathBuf>,
    /// The map value shown at full heat (default: the slice's maximum).
    #[arg(long)]
    map_max: Option<f32>,
}

/// Black-red-yellow-white heat scale for `t` in [0, 1].
fn heat(t: f32) -> [f32; 3] {
    let t = t.clamp(0.0, 1.0) * 3.0;
    [
        t.min(1.0),
        (t - 1.0).clamp(0.0, 1.0),
        (t - 2.0).clamp(0.0, 1.0),
    ]
    .map(|c| c * 255.0)
}

/// Blends the map's slice over the grey image: opacity grows with the value.
fn overlay(rgb: &mut [u8], map: ndarray::ArrayView2<f32>, max: f32, s: usize, w: usize) {
    for (i, px) in rgb.chunks_exact_mut(3).enumerate() {
        let (py, pxx) = (i / w, i % w);
        let t = map[[py / s, pxx / s]] / max;
        // zero, negative or NaN: nothing to show
        if t.is_nan() || t <= 0.0 {
            continue;
        }
        let a = 0.85 * t.min(1.0);
        let c = heat(t);
        for (v, c) in px.iter_mut().zip(c) {
            *v = ((1.0 - a) * f32::from(*v) + a * c) as u8;
        }
    }
}

const COLORS: [[u8; 3]; 3] = [[230, 40, 40], [40, 220, 60], [60, 120, 255]];

pub fn run(args: Args) -> Result<()> {
    let opts = ReadOptions::default();
    let ct = read_nifti(args.case_dir.join("image.nii.gz"), &opts)?.to_f32();
    let mut ann = Vec::new();
    for k in 1..=3 {
        let path = args.case_dir.join(format!("annotation_{k}.nii.gz"));
        let labels = read_nifti(&path, &opts)?.to_labels(3)?;
        ct.ensure_same_grid(&args.case_dir.join("image.nii.gz"), &labels, &path)?;
        ann.push(labels);
    }
    let [nz, ny, nx] = ct.shape_zyx();
    let z = match args.slice {
        Some(z) if z < nz => z,
        Some(z) => bail!("slice {z} is outside 0..{nz}"),
        None => {
            let counts: Vec<usize> = ann[0]
                .data()
                .axis_iter(Axis(0))
                .map(|s| s.iter().filter(|v| **v == 1).count())
                .collect();
            let best = (0..nz).max_by_key(|z| counts[*z]).unwrap_or(nz / 2);
            if counts[best] == 0 { nz / 2 } else { best }
        }
    };
    let s = args.scale.unwrap_or((512 / ny.max(nx)).max(1));
    let (h, w) = (ny * s, nx * s);
    let (center, width) = (args.window[0], args.window[1].max(1.0));
    let slice = ct.data().index_axis(Axis(0), z);
    let mut rgb = vec![0u8; h * w * 3];
    for py in 0..h {
        for px in 0..w {
            let v = slice[[py / s, px / s]];
            let g = (((v - center) / width + 0.5).clamp(0.0, 1.0) * 255.0) as u8;
            rgb[(py * w + px) * 3..][..3].copy_from_slice(&[g, g, g]);
        }
    }
    if let Some(path) = &args.map {
        let map = read_nifti(path, &opts)?.to_f32();
        ct.ensure_same_grid(&args.case_dir.join("image.nii.gz"), &map, path)?;
        let slice = map.data().index_axis(Axis(0), z);
        let max = args
            .map_max
            .unwrap_or_else(|| slice.iter().copied().fold(0.0, f32::max));
        if max > 0.0 {
            overlay(&mut rgb, slice, max, s, w);
        }
        println!("map {} on slice z={z}: full heat at {max}", path.display());
    }
    for (a, color) in ann.iter().zip(COLORS) {
        let labels: Array2<u8> = a.data().index_axis(Axis(0), z).to_owned();
        let at = |py: usize, px: usize| labels[[py / s, px / s]];
        for py in 0..h {
            for px in 0..w {
                let l = at(py, px);
                if l == 0 {
                    continue;
                }
                let edge = (py == 0 || at(py - 1, px) != l)
                    || (py + 1 == h || at(py + 1, px) != l)
                    || (px == 0 || at(py, px - 1) != l)
                    || (px + 1 == w || at(py, px + 1) != l);
                if edge {
                    rgb[(py * w + px) * 3..][..3].copy_from_slice(&color);
                }
            }
        }
    }
    let file =
        File::create(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let mut enc = png::Encoder::new(BufWriter::new(file), w as u32, h as u32);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    enc.write_header()?.write_image_data(&rgb)?;
    println!("slice z={z} of {nz} -> {} ({w}x{h})", args.out.display());
    Ok(())
}
