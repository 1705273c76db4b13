//! nnU-Net's export row block by row block: logits of consecutive rows (axis 0) of the network's
//! grid in, probability maps and labels of the image's grid out as soon as their rows are
//! complete, streamed into gzipped NIfTI files. Possible without a transpose, and with rows
//! resampled (CURVAS's 0.6 mm scans on its 1 mm plan) when every image row reads at most two
//! consecutive network rows (`RowResampler`). The bytes are those of the whole-volume export
//! (`infer::export_logits` + `outputs::encode_prediction`): the same lanes are interpolated,
//! softmax and argmax are per voxel.

use crate::infer::argmax;
use crate::outputs::{PREDICTION_JSON, PredictionRecord};
use crate::predict::{Accumulation, PredictError, softmax};
use ndarray::{Array3, Array4, ArrayView4, Axis, s};
use statapp_nnunet::ensemble::SEGMENTATION_FILE;
use statapp_nnunet::model_dir::ModelInfo;
use statapp_nnunet::model_dir::probability_file;
use statapp_nnunet::plans_file::{Configuration, Plans};
use statapp_nnunet::preprocess::CaseProperties;
use statapp_nnunet::resample::{RowResampler, resample_image, separate_axis};
use statapp_volume::{Geometry, NiftiRowWriter, WriteOptions};

/// A row-block export in progress.
#[derive(Debug)]
pub struct RowExport {
    props: CaseProperties,
    separate: Option<usize>,
    f16: bool,
    classes: Vec<String>,
    maps: Vec<NiftiRowWriter<f32>>,
    labels: NiftiRowWriter<u8>,
    /// One per class when rows are resampled.
    rows: Option<Vec<RowResampler>>,
    /// Image rows (of the crop box) written so far.
    received: usize,
}

impl RowExport {
    /// Whether the network grid of shape `net_shape` exports row block by row block.
    pub fn supported(
        plans: &Plans,
        config: &Configuration,
        props: &CaseProperties,
        net_shape: [usize; 3],
    ) -> bool {
        plans.transpose_forward == [0, 1, 2]
            && plans.transpose_backward == [0, 1, 2]
            && (net_shape[0] == props.shape_after_cropping_and_before_resampling[0]
                || Self::row_resampler(config, props, net_shape[0]).is_some())
    }

    fn row_resampler(
        config: &Configuration,
        props: &CaseProperties,
        net_rows: usize,
    ) -> Option<RowResampler> {
        let separate = separate_axis(config.spacing, props.spacing);
        let cropped = props.shape_after_cropping_and_before_resampling;
        RowResampler::new(net_rows, cropped, 1, separate)
    }

    /// `net_rows`: rows of the network grid that will be pushed.
    pub fn new(
        info: &ModelInfo,
        config: &Configuration,
        props: &CaseProperties,
        geometry: &Geometry,
        accumulation: Accumulation,
        net_rows: usize,
    ) -> Result<Self, PredictError> {
        let w = WriteOptions::default();
        let rows = if net_rows == props.shape_after_cropping_and_before_resampling[0] {
            None
        } else {
            let one =
                || Self::row_resampler(config, props, net_rows).ok_or(PredictError::NotRowWise);
            Some(
                (0..info.classes.len())
                    .map(|_| one())
                    .collect::<Result<_, _>>()?,
            )
        };
        let mut out = Self {
            props: props.clone(),
            separate: separate_axis(config.spacing, props.spacing),
            f16: accumulation == Accumulation::F16,
            classes: info.classes.clone(),
            maps: (1..info.classes.len())
                .map(|_| NiftiRowWriter::new(geometry, &w))
                .collect(),
            labels: NiftiRowWriter::new(geometry, &w),
            rows,
            received: 0,
        };
        // image rows before the crop box: background everywhere
        out.fill_rows(props.bbox_used_for_cropping[0][0])?;
        Ok(out)
    }

    fn fill_rows(&mut self, n: usize) -> Result<(), PredictError> {
        let [_, y, x] = self.props.shape_before_cropping;
        let zeros = Array3::<f32>::zeros((n, y, x));
        for m in &mut self.maps {
            m.write_rows(zeros.view())?;
        }
        self.labels
            .write_rows(Array3::<u8>::zeros((n, y, x)).view())
            .map_err(PredictError::from)
    }

    /// The next rows of logits `(classes, n, y, x)` on the network grid (unpadded).
    pub fn push(&mut self, logits: ArrayView4<f32>) -> Result<(), PredictError> {
        let n = logits.dim().1;
        let cropped = self.props.shape_after_cropping_and_before_resampling;
        let mut resampled: Vec<Array3<f32>> = match &mut self.rows {
            Some(rows) => rows
                .iter_mut()
                .zip(logits.outer_iter())
                .map(|(r, c)| r.push(c))
                .collect(),
            None => logits
                .outer_iter()
                .map(|c| {
                    resample_image(&c.to_owned(), [n, cropped[1], cropped[2]], 1, self.separate)
                })
                .collect(),
        };
        let n = resampled.first().map_or(0, |r| r.dim().0);
        if n == 0 {
            return Ok(());
        }
        if self.f16 {
            for r in &mut resampled {
                r.mapv_inplace(|v| half::f16::from_f32(v).to_f32());
            }
        }
        let views: Vec<_> = resampled.iter().map(|a| a.view()).collect();
        let probs = softmax(&ndarray::stack(Axis(0), &views)?);
        drop(resampled);
        let b = self.props.bbox_used_for_cropping;
        let [_, y, x] = self.props.shape_before_cropping;
        let full: Vec<Array3<f32>> = probs
            .outer_iter()
            .enumerate()
            .map(|(c, p)| {
                let mut out = Array3::from_elem((n, y, x), if c == 0 { 1.0 } else { 0.0 });
                out.slice_mut(s![.., b[1][0]..b[1][1], b[2][0]..b[2][1]])
                    .assign(&p);
                out
            })
            .collect();
        let labels = argmax(full.iter().map(|p| p.view()));
        for (m, p) in self.maps.iter_mut().zip(full.iter().skip(1)) {
            m.write_rows(p.view())?;
        }
        self.labels.write_rows(labels.view())?;
        self.received += n;
        Ok(())
    }

    /// The files of the prediction as `(name, bytes)`, segmentation last (as `encode_prediction`).
    pub fn finish(
        mut self,
        record: &PredictionRecord,
    ) -> Result<Vec<(String, Vec<u8>)>, PredictError> {
        let b = self.props.bbox_used_for_cropping;
        if self.received != b[0][1] - b[0][0] {
            return Err(PredictError::RowsMissing {
                received: self.received,
                expected: b[0][1] - b[0][0],
            });
        }
        self.fill_rows(self.props.shape_before_cropping[0] - b[0][1])?;
        let mut out = Vec::new();
        for (class, m) in self.classes.iter().skip(1).zip(self.maps) {
            out.push((probability_file(class), m.finish()?));
        }
        let json = serde_json::to_string_pretty(record)? + "\n";
        out.push((PREDICTION_JSON.to_string(), json.into_bytes()));
        out.push((SEGMENTATION_FILE.to_string(), self.labels.finish()?));
        Ok(out)
    }
}

/// Row blocks of a whole logits volume, for callers that hold one.
pub fn row_blocks(logits: &Array4<f32>, rows: usize) -> impl Iterator<Item = ArrayView4<'_, f32>> {
    let z = logits.dim().1;
    (0..z)
        .step_by(rows.max(1))
        .map(move |z0| logits.slice(s![.., z0..(z0 + rows).min(z), .., ..]))
}
