//! Every CURVAS / ValUES metric of `METRICS.md`, in the corrected definitions this project stands
//! behind and in the original statapp flavour (bugs included, `statapp_compat`), plus the CSV rows
//! and their merge. No deep-learning or cloud dependency: this crate only needs volumes.

pub mod calibration;
mod compute;
pub mod crps;
pub mod curves;
pub mod edt;
pub mod hausdorff;
mod load;
pub mod merge;
pub mod ranking;
mod real;
mod report;
mod roi;

pub use compute::{CaseArrays, CaseMeta, compute, ncc};
pub use load::{CasePaths, MetricsError, load_case, score_files};
pub use real::{Real, mean_strict, nan_mean};
pub use report::{COMPAT_COLUMNS, CaseMetrics, corrected_columns, csv_header};
pub use roi::{Roi, RoiMode};
