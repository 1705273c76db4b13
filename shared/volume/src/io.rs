//! NIfTI-1 reading and writing.
//!
//! The header is parsed by the `nifti` crate; the voxel data is read straight into an `ndarray`
//! with no transposition: NIfTI stores `i` fastest, so the bytes of an `(I, J, K)` Fortran-order
//! volume are exactly the bytes of a `(K, J, I)` C-order array, our `[z, y, x]` (see `geometry`).
//! Writing is our own (header plus raw data) because the `nifti` writer always resets
//! `scl_slope`/`scl_inter`, which scaled-integer probability maps need, and cannot write atomically.

use crate::Volume;
use crate::error::{Result, VolumeError};
use crate::geometry::Geometry;
use crate::header;
use bytemuck::Pod;
use flate2::Compression;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use ndarray::Array3;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

#[cfg(target_endian = "big")]
compile_error!("statapp-volume assumes a little-endian host (x86-64, aarch64)");

const HEADER_SIZE: usize = 348;
/// Header plus the 4-byte extension flag: where single-file NIfTI data starts.
const VOX_OFFSET: usize = 352;

/// A voxel type that can live in a NIfTI file.
pub trait Element: Pod + Copy + Send + Sync + 'static {
    /// NIfTI `datatype` code.
    const DATATYPE: i16;
    fn to_f64(self) -> f64;
    fn is_finite(self) -> bool {
        true
    }
}

macro_rules! element {
    ($t:ty, $code:expr) => {
        impl Element for $t {
            const DATATYPE: i16 = $code;
            fn to_f64(self) -> f64 {
                f64::from(self)
            }
        }
    };
}
element!(u8, 2);
element!(i16, 4);
element!(i32, 8);
element!(i8, 256);
element!(u16, 512);
element!(u32, 768);

impl Element for f32 {
    const DATATYPE: i16 = 16;
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    fn is_finite(self) -> bool {
        f32::is_finite(self)
    }
}

impl Element for f64 {
    const DATATYPE: i16 = 64;
    fn to_f64(self) -> f64 {
        self
    }
    fn is_finite(self) -> bool {
        f64::is_finite(self)
    }
}

/// The voxel array of a file, in its stored type.
#[derive(Debug, Clone, PartialEq)]
pub enum VoxelData {
    U8(Array3<u8>),
    I8(Array3<i8>),
    I16(Array3<i16>),
    U16(Array3<u16>),
    I32(Array3<i32>),
    U32(Array3<u32>),
    F32(Array3<f32>),
    F64(Array3<f64>),
}

macro_rules! each_variant {
    ($data:expr, $a:ident => $body:expr) => {
        match $data {
            VoxelData::U8($a) => $body,
            VoxelData::I8($a) => $body,
            VoxelData::I16($a) => $body,
            VoxelData::U16($a) => $body,
            VoxelData::I32($a) => $body,
            VoxelData::U32($a) => $body,
            VoxelData::F32($a) => $body,
            VoxelData::F64($a) => $body,
        }
    };
}

impl VoxelData {
    /// Name of the stored type, as nibabel prints it.
    pub fn type_name(&self) -> &'static str {
        match self {
            VoxelData::U8(_) => "uint8",
            VoxelData::I8(_) => "int8",
            VoxelData::I16(_) => "int16",
            VoxelData::U16(_) => "uint16",
            VoxelData::I32(_) => "int32",
            VoxelData::U32(_) => "uint32",
            VoxelData::F32(_) => "float32",
            VoxelData::F64(_) => "float64",
        }
    }

    /// Applies `f` to every stored value widened to f64, in memory order.
    fn map_f64<U>(&self, f: impl Fn(f64) -> U) -> Array3<U> {
        each_variant!(self, a => a.mapv(|v| f(v.to_f64())))
    }
}

/// `scl_slope` / `scl_inter` as NIfTI defines them: a slope of 0 or NaN means "no scaling".
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scaling {
    pub slope: f32,
    pub inter: f32,
}

impl Scaling {
    fn from_header(slope: f32, inter: f32) -> Option<Self> {
        let identity = slope == 1.0 && (inter == 0.0 || !inter.is_finite());
        if slope == 0.0 || !slope.is_finite() || identity {
            None
        } else {
            let inter = if inter.is_finite() { inter } else { 0.0 };
            Some(Self { slope, inter })
        }
    }
}

/// Limits applied while reading untrusted files.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// Largest accepted voxel count; the default fits a 1000 x 512 x 512 CT with room to spare.
    pub max_voxels: u64,
    /// Most bytes the decoded voxels may take, checked from the header before anything is
    /// allocated or decompressed: a gzip bomb stops with [`VolumeError::OverBudget`] instead of an
    /// out-of-memory kill. The default (4 GiB) holds a 1000 x 512 x 512 float32 CT.
    pub max_bytes: u64,
    /// Accept NaN or infinite values in floating-point data (rejected by default).
    pub allow_non_finite: bool,
}

impl Default for ReadOptions {
    fn default() -> Self {
        Self {
            max_voxels: 600_000_000,
            max_bytes: 4 << 30,
            allow_non_finite: false,
        }
    }
}

impl ReadOptions {
    /// The limits of a process with `memory_mib` of memory: one decoded file may take a third of
    /// it (validation holds an image and an annotation, and converts one of them).
    pub fn for_memory_mib(memory_mib: u64) -> Self {
        Self {
            max_bytes: (memory_mib << 20) / 3,
            ..Self::default()
        }
    }
}

/// The most header extension bytes skipped before the voxels (DICOM headers and the like are
/// kilobytes; more is a decompression bomb).
const MAX_VOX_OFFSET: f32 = (64 << 20) as f32;

/// After the voxels, a gzip stream is drained to check its trailer; more than this many bytes of
/// trailing data is an attack on the decompressor (or not this file's data), not padding.
const MAX_TRAILING: u64 = 1 << 20;

/// A NIfTI file as read: geometry, optional intensity scaling and the raw voxels.
#[derive(Debug, Clone)]
pub struct NiftiImage {
    pub path: PathBuf,
    pub geometry: Geometry,
    pub scaling: Option<Scaling>,
    pub data: VoxelData,
    /// The header as stored (description, intent, cal_min/max ...), for `inspect`.
    pub header: nifti::NiftiHeader,
}

impl NiftiImage {
    /// Real-valued voxels (`stored * slope + inter`, computed in f64 like nibabel, then f32).
    pub fn to_f32(&self) -> Volume<f32> {
        let data = match (&self.data, self.scaling) {
            (VoxelData::F32(a), None) => a.clone(),
            (d, None) => d.map_f64(|v| v as f32),
            (d, Some(s)) => {
                let (m, b) = (f64::from(s.slope), f64::from(s.inter));
                d.map_f64(|v| (v * m + b) as f32)
            }
        };
        Volume::from_parts(data, self.geometry.clone())
    }

    /// Label map: real values that must be integers (within 1e-3, for labels stored as scaled or
    /// floating-point values) in `0..=max_label`. Converted value by value, so a label file stored
    /// as float64 costs one byte per voxel more, not eight.
    pub fn to_labels(&self, max_label: u8) -> Result<Volume<u8>> {
        let (m, b) = self
            .scaling
            .map_or((1.0, 0.0), |s| (f64::from(s.slope), f64::from(s.inter)));
        let max = f64::from(max_label);
        let mut bad = None;
        let labels = each_variant!(&self.data, a => a.mapv(|v| {
            let real = v.to_f64() * m + b;
            let label = real.round();
            let ok = (real - label).abs() <= 1e-3 && (0.0..=max).contains(&label);
            if !ok && bad.is_none() {
                bad = Some(real);
            }
            if ok { label as u8 } else { 0 }
        }));
        match bad {
            Some(value) => Err(self.invalid_label(value, max_label)),
            None => Ok(Volume::from_parts(labels, self.geometry.clone())),
        }
    }

    fn invalid_label(&self, value: f64, max: u8) -> VolumeError {
        VolumeError::InvalidLabel {
            path: self.path.clone(),
            value,
            min: 0,
            max,
        }
    }

    /// Smallest and largest real value (after scaling); `None` for an empty volume.
    pub fn value_range(&self) -> Option<(f64, f64)> {
        let (m, b) = self
            .scaling
            .map_or((1.0, 0.0), |s| (f64::from(s.slope), f64::from(s.inter)));
        let (lo, hi) = each_variant!(&self.data, a => a.iter().fold(
            (f64::INFINITY, f64::NEG_INFINITY),
            |(lo, hi), v| { let v = v.to_f64(); (lo.min(v), hi.max(v)) },
        ));
        if lo > hi {
            return None;
        }
        let (x, y) = (lo * m + b, hi * m + b);
        Some((x.min(y), x.max(y)))
    }
}

/// A file's voxel stream (decompressed when its content is gzip, whatever its name) and whether
/// it was gzipped.
fn open_stream(path: &Path) -> Result<(Box<dyn Read + Send>, bool)> {
    let file = File::open(path).map_err(|e| VolumeError::io(path, e))?;
    let mut buffered = BufReader::with_capacity(1 << 20, file);
    let gzipped = buffered
        .fill_buf()
        .map_err(|e| VolumeError::io(path, e))?
        .starts_with(&[0x1f, 0x8b]);
    let reader: Box<dyn Read + Send> = if gzipped {
        Box::new(BufReader::with_capacity(
            1 << 20,
            MultiGzDecoder::new(buffered),
        ))
    } else {
        Box::new(buffered)
    };
    Ok((reader, gzipped))
}

/// Reads a `.nii` or `.nii.gz` file (gzip is detected from the content, not the name).
pub fn read_nifti(path: impl AsRef<Path>, options: &ReadOptions) -> Result<NiftiImage> {
    let path = path.as_ref();
    let (reader, gzipped) = open_stream(path)?;
    read_stream(path, reader, gzipped, options)
}

/// Reads a single-file NIfTI from bytes already in memory (for example an S3 object body).
pub fn read_nifti_bytes(name: &Path, bytes: &[u8], options: &ReadOptions) -> Result<NiftiImage> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let decoder = MultiGzDecoder::new(bytes);
        read_stream(
            name,
            BufReader::with_capacity(1 << 20, decoder),
            true,
            options,
        )
    } else {
        read_stream(name, bytes, false, options)
    }
}

/// The geometry of a single-file NIfTI in memory, from its header only (the voxels are neither
/// decompressed nor read).
pub fn read_nifti_geometry_bytes(name: &Path, bytes: &[u8]) -> Result<Geometry> {
    let gzipped = bytes.starts_with(&[0x1f, 0x8b]);
    let mut reader: Box<dyn Read + '_> = if gzipped {
        Box::new(MultiGzDecoder::new(bytes))
    } else {
        Box::new(bytes)
    };
    let (header, dims) = read_header(name, &mut reader, gzipped, &ReadOptions::default())?;
    Ok(Geometry::from_header(&header, dims))
}

/// The geometry of a NIfTI file from its header only (the voxels are neither decompressed nor
/// read).
pub fn read_nifti_geometry(path: impl AsRef<Path>) -> Result<Geometry> {
    let path = path.as_ref();
    let (mut reader, gzipped) = open_stream(path)?;
    let (header, dims) = read_header(path, &mut reader, gzipped, &ReadOptions::default())?;
    Ok(Geometry::from_header(&header, dims))
}

/// A read error inside a gzip stream means the compressed file is cut short or damaged.
fn stream_error(path: &Path, gzipped: bool) -> impl Fn(io::Error) -> VolumeError + '_ {
    move |e: io::Error| {
        let cut = e.kind() == io::ErrorKind::UnexpectedEof;
        if gzipped || cut {
            VolumeError::Truncated {
                path: path.to_path_buf(),
                detail: e.to_string(),
            }
        } else {
            VolumeError::io(path, e)
        }
    }
}

/// Reads and checks the header and skips to the first voxel; the header with its dimensions.
fn read_header<R: Read>(
    path: &Path,
    reader: &mut R,
    gzipped: bool,
    options: &ReadOptions,
) -> Result<(nifti::NiftiHeader, [usize; 3])> {
    let stream_error = stream_error(path, gzipped);
    let mut raw_header = [0u8; HEADER_SIZE];
    if let Err(e) = reader.read_exact(&mut raw_header) {
        return Err(match e.kind() {
            io::ErrorKind::UnexpectedEof if !gzipped => VolumeError::NotNifti {
                path: path.to_path_buf(),
                reason: format!("shorter than the {HEADER_SIZE}-byte header"),
            },
            _ => stream_error(e),
        });
    }
    let header =
        nifti::NiftiHeader::from_reader(&raw_header[..]).map_err(|e| VolumeError::NotNifti {
            path: path.to_path_buf(),
            reason: format!("header rejected: {e}"),
        })?;
    let not_nifti = |reason: &str| VolumeError::NotNifti {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    if header.sizeof_hdr != HEADER_SIZE as i32 {
        return Err(not_nifti("sizeof_hdr is not 348"));
    }
    if &header.magic != b"n+1\0" {
        return Err(not_nifti(
            "magic is not \"n+1\": header/image pairs (.hdr/.img) are not supported",
        ));
    }
    let dims = header::validate_dims(path, &header)?;
    header::validate_spacing(path, &header)?;
    header::validate_affine(path, &header)?;
    let voxels: u64 = dims.iter().map(|d| *d as u64).product();
    if voxels > options.max_voxels {
        return Err(VolumeError::TooLarge {
            path: path.to_path_buf(),
            voxels,
            limit: options.max_voxels,
        });
    }
    let bytes = voxels * header::bytes_per_voxel(path, header.datatype)?;
    if bytes > options.max_bytes {
        return Err(VolumeError::OverBudget {
            path: path.to_path_buf(),
            bytes,
            budget: options.max_bytes,
        });
    }
    let vox_offset = header.vox_offset;
    if !(vox_offset >= HEADER_SIZE as f32 && vox_offset <= MAX_VOX_OFFSET) {
        return Err(VolumeError::InvalidHeader {
            path: path.to_path_buf(),
            field: "vox_offset",
            detail: format!(
                "{vox_offset} is not between the end of the header and {MAX_VOX_OFFSET} bytes"
            ),
        });
    }
    // Skip the extension flag and any extensions.
    let skip = vox_offset as u64 - HEADER_SIZE as u64;
    let skipped = io::copy(&mut reader.take(skip), &mut io::sink()).map_err(&stream_error)?;
    if skipped != skip {
        return Err(stream_error(io::ErrorKind::UnexpectedEof.into()));
    }
    Ok((header, dims))
}

fn read_stream<R: Read>(
    path: &Path,
    mut reader: R,
    gzipped: bool,
    options: &ReadOptions,
) -> Result<NiftiImage> {
    let stream_error = stream_error(path, gzipped);
    let (header, dims) = read_header(path, &mut reader, gzipped, options)?;
    let shape = (dims[2], dims[1], dims[0]);
    let n = dims.iter().product::<usize>();
    let swap = header.endianness != nifti::Endianness::native();
    let data = match header.datatype {
        2 => VoxelData::U8(read_array(&mut reader, shape, n, swap).map_err(&stream_error)?),
        4 => VoxelData::I16(read_array(&mut reader, shape, n, swap).map_err(&stream_error)?),
        8 => VoxelData::I32(read_array(&mut reader, shape, n, swap).map_err(&stream_error)?),
        16 => VoxelData::F32(read_array(&mut reader, shape, n, swap).map_err(&stream_error)?),
        64 => VoxelData::F64(read_array(&mut reader, shape, n, swap).map_err(&stream_error)?),
        256 => VoxelData::I8(read_array(&mut reader, shape, n, swap).map_err(&stream_error)?),
        512 => VoxelData::U16(read_array(&mut reader, shape, n, swap).map_err(&stream_error)?),
        768 => VoxelData::U32(read_array(&mut reader, shape, n, swap).map_err(&stream_error)?),
        code => {
            return Err(VolumeError::UnsupportedDatatype {
                path: path.to_path_buf(),
                code,
            });
        }
    };
    if gzipped {
        // Drain to the end so that the gzip trailer (CRC and length) is checked.
        let trailing = io::copy(&mut reader.by_ref().take(MAX_TRAILING + 1), &mut io::sink())
            .map_err(&stream_error)?;
        if trailing > MAX_TRAILING {
            return Err(VolumeError::TrailingData {
                path: path.to_path_buf(),
                limit: MAX_TRAILING,
            });
        }
    }
    if !options.allow_non_finite {
        let bad = match &data {
            VoxelData::F32(a) => a.iter().filter(|v| !v.is_finite()).count(),
            VoxelData::F64(a) => a.iter().filter(|v| !v.is_finite()).count(),
            _ => 0,
        };
        if bad > 0 {
            return Err(VolumeError::NonFinite {
                path: path.to_path_buf(),
                count: bad,
            });
        }
    }
    Ok(NiftiImage {
        path: path.to_path_buf(),
        geometry: Geometry::from_header(&header, dims),
        scaling: Scaling::from_header(header.scl_slope, header.scl_inter),
        data,
        header,
    })
}

fn read_array<T: Pod, R: Read>(
    reader: &mut R,
    shape: (usize, usize, usize),
    n: usize,
    swap: bool,
) -> io::Result<Array3<T>> {
    let mut values = vec![T::zeroed(); n];
    let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut values);
    reader.read_exact(bytes)?;
    if swap {
        for chunk in bytes.chunks_exact_mut(size_of::<T>()) {
            chunk.reverse();
        }
    }
    Array3::from_shape_vec(shape, values)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
}

/// How to write a file.
#[derive(Debug, Clone, Copy)]
pub struct WriteOptions {
    /// `Some((slope, inter))` stores `scl_slope`/`scl_inter` (for scaled integers).
    pub scaling: Option<Scaling>,
    /// gzip level 0-9 for `.gz` paths; 1 is nibabel's default and a good speed/size trade-off.
    pub gzip_level: u32,
}

impl Default for WriteOptions {
    fn default() -> Self {
        Self {
            scaling: None,
            gzip_level: 1,
        }
    }
}

/// Writes a volume; gzip-compressed when the path ends in `.gz`. The file appears complete or
/// not at all: data goes to a temporary file in the same directory that is renamed at the end.
pub fn write_nifti<T: Element>(path: impl AsRef<Path>, volume: &Volume<T>) -> Result<()> {
    write_nifti_with(path, volume, &WriteOptions::default())
}

/// [`write_nifti`] with explicit options.
pub fn write_nifti_with<T: Element>(
    path: impl AsRef<Path>,
    volume: &Volume<T>,
    options: &WriteOptions,
) -> Result<()> {
    let path = path.as_ref();
    let io_err = |e: io::Error| VolumeError::io(path, e);
    let tmp = temp_beside(path).map_err(io_err)?;
    let gz = path.to_string_lossy().ends_with(".gz");
    let file = tmp.as_file().try_clone().map_err(io_err)?;
    if gz {
        // encode_nifti's bytes (the compressor's output depends on how its input is cut)
        let mut w = BufWriter::with_capacity(1 << 20, file);
        w.write_all(&encode_nifti(volume, options, true))
            .map_err(io_err)?;
        w.flush().map_err(io_err)?;
    } else {
        let mut w = BufWriter::with_capacity(1 << 20, file);
        encode(&mut w, volume, options).map_err(io_err)?;
        w.flush().map_err(io_err)?;
    }
    publish(tmp, path).map_err(io_err)
}

/// A uniquely named `.partial-*` file in `path`'s directory, for `publish` to rename onto it.
fn temp_beside(path: &Path) -> io::Result<tempfile::NamedTempFile> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    tempfile::Builder::new()
        .prefix(".partial-")
        .tempfile_in(dir)
}

/// Writes `bytes` to `path` whole (a temporary file beside it, then `publish`), so readers and
/// crashes never see half a file and concurrent writers never share a temporary name.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut tmp = temp_beside(path)?;
    tmp.write_all(bytes)?;
    publish(tmp, path)
}

/// Renames a finished temporary file onto `path` with ordinary permissions (temporary files are
/// created owner-only). The rename is atomic: readers see the old file or the whole new one.
pub fn publish(tmp: tempfile::NamedTempFile, path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    }
    tmp.persist(path).map(|_| ()).map_err(|e| e.error)
}

/// Encodes a complete single-file NIfTI-1 (header, extension flag, data) into memory.
pub fn encode_nifti<T: Element>(volume: &Volume<T>, options: &WriteOptions, gzip: bool) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    if gzip {
        // the row writer's pieces, so that whole and streamed files are the same bytes
        let mut w = NiftiRowWriter::<T>::new(volume.geometry(), options);
        let _ = w.write_rows(volume.data().view());
        return w.finish().unwrap_or_default();
    } else {
        let _ = encode(&mut out, volume, options);
    }
    out
}

/// A float32 NIfTI-1 file read row block by row block along z (the file's slowest axis), so a
/// volume never has to be whole in memory: the same header checks and values as `read_nifti`
/// (then `into_f32`) of an unscaled float32 file, which is what statapp writes for probabilities.
/// `open` gives `None` for a valid file of another type (read it whole instead).
pub struct NiftiRowReader {
    path: PathBuf,
    reader: Box<dyn Read + Send>,
    gzipped: bool,
    swap: bool,
    allow_non_finite: bool,
    pub geometry: Geometry,
    rows: usize,
}

impl std::fmt::Debug for NiftiRowReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NiftiRowReader")
            .field("path", &self.path)
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

impl NiftiRowReader {
    pub fn open(path: impl AsRef<Path>, options: &ReadOptions) -> Result<Option<Self>> {
        let path = path.as_ref();
        let (mut reader, gzipped) = open_stream(path)?;
        let (header, dims) = read_header(path, &mut reader, gzipped, options)?;
        let scaled = Scaling::from_header(header.scl_slope, header.scl_inter).is_some();
        if header.datatype != 16 || scaled {
            return Ok(None);
        }
        Ok(Some(Self {
            path: path.to_path_buf(),
            reader,
            gzipped,
            swap: header.endianness != nifti::Endianness::native(),
            allow_non_finite: options.allow_non_finite,
            geometry: Geometry::from_header(&header, dims),
            rows: 0,
        }))
    }

    /// The next `n` rows (fewer at the end), `(n, y, x)`; after the last row the gzip trailer
    /// is checked.
    pub fn read_rows(&mut self, n: usize) -> Result<Array3<f32>> {
        let [z, y, x] = self.geometry.shape_zyx();
        let n = n.min(z - self.rows);
        let err = stream_error(&self.path, self.gzipped);
        let a: Array3<f32> =
            read_array(&mut self.reader, (n, y, x), n * y * x, self.swap).map_err(&err)?;
        if !self.allow_non_finite {
            let bad = a.iter().filter(|v| !v.is_finite()).count();
            if bad > 0 {
                return Err(VolumeError::NonFinite {
                    path: self.path.clone(),
                    count: bad,
                });
            }
        }
        self.rows += n;
        if self.rows == z && self.gzipped {
            io::copy(&mut self.reader, &mut io::sink()).map_err(&err)?;
        }
        Ok(a)
    }
}

/// A gzipped NIfTI-1 file written row block by row block along z (the file's slowest axis), so a
/// volume never has to be whole in memory; the bytes equal `encode_nifti` of the whole volume.
/// The compressor's output depends on how its input is cut, so input reaches it in pieces of
/// `GZ_PIECE` bytes whatever the row blocks are.
pub struct NiftiRowWriter<T: Element, W: Write = Vec<u8>> {
    enc: GzEncoder<W>,
    pending: Vec<u8>,
    shape: [usize; 3],
    rows: usize,
    _t: std::marker::PhantomData<T>,
}

const GZ_PIECE: usize = 1 << 20;

impl<T: Element, W: Write> std::fmt::Debug for NiftiRowWriter<T, W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NiftiRowWriter")
            .field("shape", &self.shape)
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

impl<T: Element> NiftiRowWriter<T> {
    /// A file built in memory.
    pub fn new(geometry: &Geometry, options: &WriteOptions) -> Self {
        Self::to_writer(Vec::new(), geometry, options)
    }
}

impl<T: Element, W: Write> NiftiRowWriter<T, W> {
    /// A file written through `w` as it goes (the compressed bytes are not kept).
    pub fn to_writer(w: W, geometry: &Geometry, options: &WriteOptions) -> Self {
        let enc = GzEncoder::new(w, Compression::new(options.gzip_level.min(9)));
        let mut pending = header_bytes::<T>(geometry, options.scaling);
        pending.extend_from_slice(&[0u8; VOX_OFFSET - HEADER_SIZE]);
        Self {
            enc,
            pending,
            shape: geometry.shape_zyx(),
            rows: 0,
            _t: std::marker::PhantomData,
        }
    }

    fn feed(&mut self, bytes: &[u8]) -> Result<()> {
        let io = |e| VolumeError::Io {
            path: PathBuf::from("<memory>"),
            source: e,
        };
        let mut rest = bytes;
        while !rest.is_empty() {
            let take = (GZ_PIECE - self.pending.len()).min(rest.len());
            self.pending.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.pending.len() == GZ_PIECE {
                self.enc.write_all(&self.pending).map_err(io)?;
                self.pending.clear();
            }
        }
        Ok(())
    }

    /// Appends the next rows `(n, y, x)` of the volume.
    pub fn write_rows(&mut self, rows: ndarray::ArrayView3<T>) -> Result<()> {
        let (n, y, x) = rows.dim();
        if [y, x] != [self.shape[1], self.shape[2]] || self.rows + n > self.shape[0] {
            return Err(VolumeError::ShapeMismatch {
                data: [self.rows + n, y, x],
                geometry: self.shape,
            });
        }
        match rows.as_slice() {
            Some(s) => self.feed(bytemuck::cast_slice(s))?,
            None => {
                let owned: Vec<T> = rows.iter().copied().collect();
                self.feed(bytemuck::cast_slice(&owned))?;
            }
        }
        self.rows += n;
        Ok(())
    }

    /// The file's bytes (or its writer), once every row is written.
    pub fn finish(mut self) -> Result<W> {
        if self.rows != self.shape[0] {
            return Err(VolumeError::ShapeMismatch {
                data: [self.rows, self.shape[1], self.shape[2]],
                geometry: self.shape,
            });
        }
        let io = |e| VolumeError::Io {
            path: PathBuf::from("<memory>"),
            source: e,
        };
        self.enc.write_all(&self.pending).map_err(io)?;
        self.enc.finish().map_err(io)
    }
}

/// A gzipped NIfTI file streamed row block by row block to `path`, through a temporary file
/// beside it that `finish` renames onto it (whole or not at all).
pub struct NiftiFileWriter<T: Element> {
    rows: NiftiRowWriter<T, BufWriter<tempfile::NamedTempFile>>,
    path: PathBuf,
}

impl<T: Element> std::fmt::Debug for NiftiFileWriter<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NiftiFileWriter")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl<T: Element> NiftiFileWriter<T> {
    pub fn create(
        path: impl AsRef<Path>,
        geometry: &Geometry,
        options: &WriteOptions,
    ) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let tmp = temp_beside(&path).map_err(|e| VolumeError::io(&path, e))?;
        let w = BufWriter::with_capacity(1 << 20, tmp);
        Ok(Self {
            rows: NiftiRowWriter::to_writer(w, geometry, options),
            path,
        })
    }

    pub fn write_rows(&mut self, rows: ndarray::ArrayView3<T>) -> Result<()> {
        self.rows.write_rows(rows)
    }

    pub fn finish(self) -> Result<()> {
        let io_err = |e: io::Error| VolumeError::io(&self.path, e);
        let tmp = self
            .rows
            .finish()?
            .into_inner()
            .map_err(|e| io_err(e.into_error()))?;
        publish(tmp, &self.path).map_err(io_err)
    }
}

fn encode<T: Element, W: Write>(
    w: &mut W,
    volume: &Volume<T>,
    options: &WriteOptions,
) -> io::Result<()> {
    w.write_all(&header_bytes::<T>(volume.geometry(), options.scaling))?;
    w.write_all(&[0u8; VOX_OFFSET - HEADER_SIZE])?;
    let data = volume.data();
    match data.as_slice() {
        Some(s) => w.write_all(bytemuck::cast_slice(s))?,
        None => {
            for v in data.iter() {
                w.write_all(bytemuck::bytes_of(v))?;
            }
        }
    }
    Ok(())
}

/// The 348-byte little-endian NIfTI-1 header for a 3-D volume of `T`.
fn header_bytes<T: Element>(g: &Geometry, scaling: Option<Scaling>) -> Vec<u8> {
    let mut h = Vec::with_capacity(HEADER_SIZE);
    let i16s = |h: &mut Vec<u8>, v: i16| h.extend_from_slice(&v.to_le_bytes());
    let f32s = |h: &mut Vec<u8>, v: f32| h.extend_from_slice(&v.to_le_bytes());
    h.extend_from_slice(&(HEADER_SIZE as i32).to_le_bytes()); // sizeof_hdr
    h.extend_from_slice(&[0u8; 10 + 18]); // data_type, db_name
    h.extend_from_slice(&0i32.to_le_bytes()); // extents
    i16s(&mut h, 0); // session_error
    h.push(b'r'); // regular
    h.push(0); // dim_info
    let d = g.dims_ijk.map(|v| v as i16);
    for v in [3, d[0], d[1], d[2], 1, 1, 1, 1] {
        i16s(&mut h, v);
    }
    for _ in 0..3 {
        f32s(&mut h, 0.0); // intent_p1..3
    }
    i16s(&mut h, 0); // intent_code
    i16s(&mut h, T::DATATYPE);
    i16s(&mut h, (8 * size_of::<T>()) as i16); // bitpix
    i16s(&mut h, 0); // slice_start
    let p = g.pixdim_ijk;
    for v in [g.qfac, p[0], p[1], p[2], 1.0, 1.0, 1.0, 1.0] {
        f32s(&mut h, v);
    }
    f32s(&mut h, VOX_OFFSET as f32);
    let (slope, inter) = scaling.map_or((1.0, 0.0), |s| (s.slope, s.inter));
    f32s(&mut h, slope);
    f32s(&mut h, inter);
    i16s(&mut h, 0); // slice_end
    h.push(0); // slice_code
    h.push(g.xyzt_units);
    for _ in 0..4 {
        f32s(&mut h, 0.0); // cal_max, cal_min, slice_duration, toffset
    }
    h.extend_from_slice(&[0u8; 8]); // glmax, glmin
    let mut descrip = [0u8; 80];
    let text = b"statapp";
    descrip[..text.len()].copy_from_slice(text);
    h.extend_from_slice(&descrip);
    h.extend_from_slice(&[0u8; 24]); // aux_file
    i16s(&mut h, g.qform_code);
    i16s(&mut h, g.sform_code);
    for v in g.quatern_bcd.iter().chain(&g.qoffset_xyz) {
        f32s(&mut h, *v);
    }
    for row in &g.srow {
        for v in row {
            f32s(&mut h, *v);
        }
    }
    h.extend_from_slice(&[0u8; 16]); // intent_name
    h.extend_from_slice(b"n+1\0");
    debug_assert_eq!(h.len(), HEADER_SIZE);
    h
}

/// Writes an image in its stored type with its scaling (a faithful copy of what was read,
/// minus header fields statapp does not keep, such as the description and extensions).
pub fn write_nifti_image(path: impl AsRef<Path>, image: &NiftiImage) -> Result<()> {
    let options = WriteOptions {
        scaling: image.scaling,
        ..WriteOptions::default()
    };
    let g = &image.geometry;
    each_variant!(&image.data, a => {
        let v = Volume::from_parts(a.clone(), g.clone());
        write_nifti_with(path, &v, &options)
    })
}

impl NiftiImage {
    /// Like [`NiftiImage::to_f32`], but moves unscaled f32 data instead of copying it.
    pub fn into_f32(self) -> Volume<f32> {
        match (self.data, self.scaling) {
            (VoxelData::F32(a), None) => Volume::from_parts(a, self.geometry),
            (data, scaling) => {
                let img = NiftiImage {
                    data,
                    scaling,
                    ..self
                };
                img.to_f32()
            }
        }
    }
}
