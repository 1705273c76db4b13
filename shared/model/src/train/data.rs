//! Preprocessed training cases (`statapp prepare` / nnU-Net's `nnUNetPlans_<configuration>`),
//! unpacked once to raw arrays read a region at a time, with a sample of each class's voxel
//! positions for foreground oversampling.

use ndarray::{Array3, s};
use statapp_volume::{ReadOptions, read_nifti};
use std::path::{Path, PathBuf};

/// At most this many positions are kept per class (nnU-Net keeps 10,000).
const MAX_LOCATIONS: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {detail}")]
    Read { path: PathBuf, detail: String },
    #[error("{path}: image {image:?} and labels {labels:?} differ in shape")]
    Shape {
        path: PathBuf,
        image: [usize; 3],
        labels: [usize; 3],
    },
    #[error("{dir}: no preprocessed cases (*_data.nii.gz): run `statapp prepare` first")]
    Empty { dir: PathBuf },
}

impl DataError {
    /// For `map_err`: a failure to read, decode or write `path`.
    fn at<E: std::fmt::Display>(path: &Path) -> impl Fn(E) -> DataError + Copy + '_ {
        move |e| DataError::Read {
            path: path.to_path_buf(),
            detail: e.to_string(),
        }
    }
}

/// One case: normalised image, labels (nnU-Net's -1 outside the crop mask becomes background, as
/// its `RemoveLabelTransform`), and voxel positions per foreground class. Prepared cases are
/// read a region at a time from their unpacked files, so training memory does not grow with the
/// number of cases (nnU-Net memory-maps its unpacked arrays for the same reason).
#[derive(Debug, Clone)]
pub struct TrainCase {
    pub id: String,
    shape: [usize; 3],
    /// `counts[c - 1]`: how many positions of class `c` are kept (all, evenly thinned to at
    /// most 10,000).
    counts: Vec<usize>,
    source: Source,
}

#[derive(Debug, Clone)]
enum Source {
    Memory {
        image: Array3<f32>,
        labels: Array3<u8>,
        locations: Vec<Vec<[usize; 3]>>,
    },
    /// Raw little-endian float32 and u8 arrays in C order (`unpacked/<id>.f32`, `.u8`), and the
    /// kept positions as u32 (z, y, x) triples, class after class (`.loc`).
    Files {
        image: PathBuf,
        labels: PathBuf,
        locations: PathBuf,
    },
}

/// A box of a case: what one patch reads.
#[derive(Debug, Clone)]
pub struct Region {
    pub origin: [usize; 3],
    pub image: Array3<f32>,
    pub labels: Array3<u8>,
}

impl Region {
    /// The image at `idx` in the case's coordinates (inside the box).
    pub fn image_at(&self, idx: [usize; 3]) -> f32 {
        self.image[self.local(idx)]
    }

    pub fn label_at(&self, idx: [usize; 3]) -> u8 {
        self.labels[self.local(idx)]
    }

    fn local(&self, idx: [usize; 3]) -> [usize; 3] {
        std::array::from_fn(|a| idx[a] - self.origin[a])
    }
}

fn locations(labels: &Array3<u8>, classes: usize) -> Vec<Vec<[usize; 3]>> {
    let mut all: Vec<Vec<[usize; 3]>> = vec![Vec::new(); classes];
    for ((z, y, x), &l) in labels.indexed_iter() {
        if l > 0 && usize::from(l) <= classes {
            all[usize::from(l) - 1].push([z, y, x]);
        }
    }
    all.into_iter()
        .map(|v| {
            let step = v.len().div_ceil(MAX_LOCATIONS).max(1);
            v.into_iter().step_by(step).collect()
        })
        .collect()
}

impl TrainCase {
    /// A case held in memory.
    pub fn new(id: String, image: Array3<f32>, labels: Array3<u8>, classes: usize) -> Self {
        let (z, y, x) = image.dim();
        let locations = locations(&labels, classes);
        Self {
            id,
            shape: [z, y, x],
            counts: locations.iter().map(Vec::len).collect(),
            source: Source::Memory {
                image,
                labels,
                locations,
            },
        }
    }

    pub fn shape(&self) -> [usize; 3] {
        self.shape
    }

    /// Kept positions per foreground class (`[c - 1]`).
    pub fn counts(&self) -> &[usize] {
        &self.counts
    }

    /// The `i`-th kept position of foreground class `c` (1-based).
    pub fn location(&self, c: usize, i: usize) -> Result<[usize; 3], DataError> {
        match &self.source {
            Source::Memory { locations, .. } => Ok(locations[c - 1][i]),
            Source::Files { locations, .. } => {
                let index = self.counts[..c - 1].iter().sum::<usize>() + i;
                read_triple(locations, index)
            }
        }
    }

    /// The box `origin .. origin + size` (inside the case).
    pub fn region(&self, origin: [usize; 3], size: [usize; 3]) -> Result<Region, DataError> {
        let end: [usize; 3] = std::array::from_fn(|a| origin[a] + size[a]);
        let (image, labels) = match &self.source {
            Source::Memory { image, labels, .. } => {
                let b = s![origin[0]..end[0], origin[1]..end[1], origin[2]..end[2]];
                (image.slice(b).to_owned(), labels.slice(b).to_owned())
            }
            Source::Files { image, labels, .. } => (
                read_box(image, self.shape, origin, size, f32::from_le_bytes)?,
                read_box(labels, self.shape, origin, size, u8::from_le_bytes)?,
            ),
        };
        Ok(Region {
            origin,
            image,
            labels,
        })
    }

    /// The whole case (final validation).
    pub fn whole(&self) -> Result<Region, DataError> {
        self.region([0; 3], self.shape)
    }
}

/// The `index`-th u32 (z, y, x) triple of a `.loc` file.
fn read_triple(path: &Path, index: usize) -> Result<[usize; 3], DataError> {
    use std::os::unix::fs::FileExt;
    let mut b = [0u8; 12];
    std::fs::File::open(path)
        .and_then(|f| f.read_exact_at(&mut b, (index * 12) as u64))
        .map_err(DataError::at(path))?;
    Ok(std::array::from_fn(|a| {
        u32::from_le_bytes([b[4 * a], b[4 * a + 1], b[4 * a + 2], b[4 * a + 3]]) as usize
    }))
}

/// Reads a box of a raw C-order array of `shape`, one row of the box at a time.
fn read_box<T: Copy + Default, const N: usize>(
    path: &Path,
    shape: [usize; 3],
    origin: [usize; 3],
    size: [usize; 3],
    decode: fn([u8; N]) -> T,
) -> Result<Array3<T>, DataError> {
    use std::os::unix::fs::FileExt;
    let err = DataError::at(path);
    let file = std::fs::File::open(path).map_err(err)?;
    let mut out = Array3::from_elem((size[0], size[1], size[2]), T::default());
    let mut row = vec![0u8; size[2] * N];
    for z in 0..size[0] {
        for y in 0..size[1] {
            let at = ((origin[0] + z) * shape[1] + origin[1] + y) * shape[2] + origin[2];
            file.read_exact_at(&mut row, (at * N) as u64).map_err(err)?;
            for (x, bytes) in row.chunks_exact(N).enumerate() {
                let mut b = [0u8; N];
                b.copy_from_slice(bytes);
                out[[z, y, x]] = decode(b);
            }
        }
    }
    Ok(out)
}

/// Ids of the preprocessed cases in `dir/<data_identifier>`, sorted.
pub fn list_ids(dir: &Path, data_identifier: &str) -> Result<Vec<String>, DataError> {
    let folder = dir.join(data_identifier);
    let entries = std::fs::read_dir(&folder).map_err(DataError::at(&folder))?;
    let mut ids: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix("_data.nii.gz"))
                .map(str::to_string)
        })
        .collect();
    ids.sort();
    if ids.is_empty() {
        return Err(DataError::Empty { dir: folder });
    }
    Ok(ids)
}

/// What `unpacked/<id>.json` records: the unpacked arrays' shape and foreground positions, and the
/// prepared files they came from (a changed file is unpacked again).
#[derive(Debug, serde::Serialize, serde::Deserialize, PartialEq)]
struct Unpacked {
    shape: [usize; 3],
    sources: Vec<(u64, u128)>,
    counts: Vec<usize>,
}

/// Size and modification time (ns) of each prepared file.
fn stamps(paths: &[PathBuf]) -> Result<Vec<(u64, u128)>, DataError> {
    paths
        .iter()
        .map(|p| {
            let err = DataError::at(p);
            let meta = std::fs::metadata(p).map_err(err)?;
            let modified = meta.modified().map_err(err)?;
            let ns = modified
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            Ok((meta.len(), ns))
        })
        .collect()
}

/// A preprocessed case with its segmentation, unpacked once into `<data_identifier>/unpacked/`
/// (the raw arrays and `<id>.json`, written last) and read from there a region at a time.
pub fn load_case(
    dir: &Path,
    data_identifier: &str,
    id: &str,
    classes: usize,
) -> Result<TrainCase, DataError> {
    let folder = dir.join(data_identifier);
    let files = [
        folder.join(format!("{id}_data.nii.gz")),
        folder.join(format!("{id}_seg.nii.gz")),
    ];
    let unpacked = folder.join("unpacked");
    let [image, labels, locations] =
        ["f32", "u8", "loc"].map(|ext| unpacked.join(format!("{id}.{ext}")));
    let record = unpacked.join(format!("{id}.json"));
    let sources = stamps(&files)?;
    let known = std::fs::read(&record)
        .ok()
        .and_then(|b| serde_json::from_slice::<Unpacked>(&b).ok())
        .filter(|u| u.sources == sources);
    let u = match known {
        Some(u) => u,
        None => unpack(
            &files,
            classes,
            sources,
            [&image, &labels, &locations, &record],
        )?,
    };
    Ok(TrainCase {
        id: id.to_string(),
        shape: u.shape,
        counts: u.counts,
        source: Source::Files {
            image,
            labels,
            locations,
        },
    })
}

/// Decodes the prepared files (one case in memory at a time) into the unpacked files.
fn unpack(
    files: &[PathBuf; 2],
    classes: usize,
    sources: Vec<(u64, u128)>,
    [image_path, labels_path, locations_path, record]: [&PathBuf; 4],
) -> Result<Unpacked, DataError> {
    let read = |path: &PathBuf| {
        read_nifti(path, &ReadOptions::default())
            .map(|img| img.into_f32().data().clone())
            .map_err(DataError::at(path))
    };
    let image = read(&files[0])?;
    let seg = read(&files[1])?;
    if image.dim() != seg.dim() {
        let d = |a: &Array3<f32>| {
            let (z, y, x) = a.dim();
            [z, y, x]
        };
        return Err(DataError::Shape {
            path: files[1].clone(),
            image: d(&image),
            labels: d(&seg),
        });
    }
    let labels = seg.mapv(|v| {
        if v > 0.0 {
            v.round().min(255.0) as u8
        } else {
            0
        }
    });
    drop(seg);
    let write = |path: &Path, bytes: &[u8]| {
        statapp_volume::write_atomic(path, bytes).map_err(DataError::at(path))
    };
    if let Some(dir) = record.parent() {
        std::fs::create_dir_all(dir).map_err(DataError::at(dir))?;
    }
    let bytes: Vec<u8> = image.iter().flat_map(|v| v.to_le_bytes()).collect();
    write(image_path, &bytes)?;
    drop(bytes);
    write(labels_path, &labels.iter().copied().collect::<Vec<u8>>())?;
    let kept = locations(&labels, classes);
    let triples: Vec<u8> = kept
        .iter()
        .flatten()
        .flat_map(|p| p.map(|v| v as u32))
        .flat_map(u32::to_le_bytes)
        .collect();
    write(locations_path, &triples)?;
    let (z, y, x) = image.dim();
    let u = Unpacked {
        shape: [z, y, x],
        sources,
        counts: kept.iter().map(Vec::len).collect(),
    };
    let json = serde_json::to_vec(&u).map_err(DataError::at(record))?;
    // last: its presence means the arrays are whole
    write(record, &json)?;
    Ok(u)
}
