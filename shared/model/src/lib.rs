//! The segmentation network: nnU-Net's PlainConvUNet in burn, seeded initialisation, checkpoints,
//! and sliding-window prediction on top of `statapp-nnunet`'s tiling. Generic over burn's device:
//! CPU (flex) here and in Lambda, CUDA in the GPU trainer.

pub mod checkpoint;
pub mod export;
pub mod infer;
pub mod nnunet_format;
pub mod outputs;
pub mod predict;
pub mod rng;
pub mod train;
pub mod unet;

pub use unet::{ParamSource, PlainConvUNet, UNetConfig};
