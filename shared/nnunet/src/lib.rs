//! nnU-Net v2 behaviour that needs no network: sliding-window tiling and accumulation (so one
//! volume can be split across workers), and the ensembling of member probabilities.

pub mod cost;
pub mod dataset;
pub mod ensemble;
pub mod model_dir;
pub mod partial;
pub mod plans;
pub mod plans_file;
pub mod prepare;
pub mod preprocess;
pub mod resample;
pub mod results;
pub mod sliding;
pub mod splits;
