//! nnU-Net's PlainConvUNet (dynamic_network_architectures) in burn: per stage two
//! conv-InstanceNorm-LeakyReLU(0.01) blocks, strided convs down, transposed convs up, skip
//! concatenation, a 1x1x1 segmentation head per decoder stage (deep supervision).

use crate::rng::Rng;
use burn::module::{Module, Param};
use burn::nn::conv::{Conv3d, Conv3dConfig, ConvTranspose3d, ConvTranspose3dConfig};
use burn::nn::{Initializer, InstanceNorm, InstanceNormConfig, PaddingConfig3d};
use burn::tensor::activation::leaky_relu;
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use statapp_nnunet::plans_file::Configuration;

/// The architecture of a PlainConvUNet (nnU-Net's `arch_kwargs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UNetConfig {
    pub in_channels: usize,
    pub num_classes: usize,
    pub features: Vec<usize>,
    pub kernel_sizes: Vec<[usize; 3]>,
    pub strides: Vec<[usize; 3]>,
    pub n_conv: Vec<usize>,
    pub n_conv_decoder: Vec<usize>,
}

impl UNetConfig {
    /// The network of a plan configuration: one CT channel, 4 classes by default.
    pub fn from_configuration(c: &Configuration, num_classes: usize) -> Self {
        Self {
            in_channels: 1,
            num_classes,
            features: c.features_per_stage.clone(),
            kernel_sizes: c.kernel_sizes.clone(),
            strides: c.strides.clone(),
            n_conv: c.n_conv_per_stage.clone(),
            n_conv_decoder: c.n_conv_per_stage_decoder.clone(),
        }
    }

    pub fn n_stages(&self) -> usize {
        self.features.len()
    }
}

/// Conv, InstanceNorm (affine, eps 1e-5), LeakyReLU(0.01).
#[derive(Module, Debug)]
pub struct ConvBlock {
    conv: Conv3d,
    norm: InstanceNorm,
}

impl ConvBlock {
    fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        leaky_relu(self.norm.forward(self.conv.forward(x)), 0.01)
    }
}

/// The network.
#[derive(Module, Debug)]
pub struct PlainConvUNet {
    encoder: Vec<Vec<ConvBlock>>,
    transpconvs: Vec<ConvTranspose3d>,
    decoder: Vec<Vec<ConvBlock>>,
    seg_layers: Vec<Conv3d>,
}

/// He (kaiming normal, a = 0.01, fan_in) weights as the original trainer's
/// `SeededInitWeights_He`: std = sqrt(2 / (1 + a^2)) / sqrt(fan_in), `fan_in = dims[1] * k^3`
/// (for transposed convs that is the output channels, as in torch).
fn he_weights(shape: [usize; 5], rng: &mut Rng, device: &Device) -> Param<Tensor<5>> {
    let fan_in = (shape[1] * shape[2] * shape[3] * shape[4]) as f64;
    let std = (2.0 / (1.0 + 0.01f64 * 0.01)).sqrt() / fan_in.sqrt();
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n).map(|_| (rng.normal() * std) as f32).collect();
    Param::from_tensor(Tensor::from_data(TensorData::new(values, shape), device))
}

fn zero_bias(n: usize, device: &Device) -> Option<Param<Tensor<1>>> {
    Some(Param::from_tensor(Tensor::zeros([n], device)))
}

fn conv(
    cin: usize,
    cout: usize,
    kernel: [usize; 3],
    stride: [usize; 3],
    rng: &mut Rng,
    device: &Device,
) -> Conv3d {
    let mut c = Conv3dConfig::new([cin, cout], kernel)
        .with_stride(stride)
        .with_padding(PaddingConfig3d::Explicit(
            kernel[0] / 2,
            kernel[1] / 2,
            kernel[2] / 2,
        ))
        .with_initializer(Initializer::Zeros)
        .init(device);
    c.weight = he_weights([cout, cin, kernel[0], kernel[1], kernel[2]], rng, device);
    c.bias = zero_bias(cout, device);
    c
}

fn stage(
    n: usize,
    cin: usize,
    cout: usize,
    kernel: [usize; 3],
    stride: [usize; 3],
    rng: &mut Rng,
    device: &Device,
) -> Vec<ConvBlock> {
    (0..n)
        .map(|i| ConvBlock {
            conv: conv(
                if i == 0 { cin } else { cout },
                cout,
                kernel,
                if i == 0 { stride } else { [1, 1, 1] },
                rng,
                device,
            ),
            norm: InstanceNormConfig::new(cout).init(device),
        })
        .collect()
}

impl PlainConvUNet {
    /// A network with seeded He initialisation (every conv weight, biases zero).
    pub fn new(cfg: &UNetConfig, seed: u64, device: &Device) -> Self {
        let mut rng = Rng::new(seed ^ 0x0005_EED0_F4E7);
        let n = cfg.n_stages();
        let f = &cfg.features;
        let mut encoder = Vec::with_capacity(n);
        for s in 0..n {
            let cin = if s == 0 { cfg.in_channels } else { f[s - 1] };
            encoder.push(stage(
                cfg.n_conv[s],
                cin,
                f[s],
                cfg.kernel_sizes[s],
                cfg.strides[s],
                &mut rng,
                device,
            ));
        }
        let (mut transpconvs, mut decoder, mut seg_layers) = (Vec::new(), Vec::new(), Vec::new());
        for s in 1..n {
            let (below, skip) = (f[n - s], f[n - s - 1]);
            let stride = cfg.strides[n - s];
            let mut t = ConvTranspose3dConfig::new([below, skip], stride)
                .with_stride(stride)
                .with_initializer(Initializer::Zeros)
                .init(device);
            t.weight = he_weights(
                [below, skip, stride[0], stride[1], stride[2]],
                &mut rng,
                device,
            );
            t.bias = zero_bias(skip, device);
            transpconvs.push(t);
            decoder.push(stage(
                cfg.n_conv_decoder[s - 1],
                2 * skip,
                skip,
                cfg.kernel_sizes[n - s - 1],
                [1, 1, 1],
                &mut rng,
                device,
            ));
            seg_layers.push(conv(
                skip,
                cfg.num_classes,
                [1, 1, 1],
                [1, 1, 1],
                &mut rng,
                device,
            ));
        }
        Self {
            encoder,
            transpconvs,
            decoder,
            seg_layers,
        }
    }

    /// Every convolution weight, flattened, in a fixed order (encoder, transposed convs,
    /// decoder, heads): for determinism checks and summaries.
    pub fn conv_weights(&self) -> Vec<Vec<f32>> {
        let data = |t: Tensor<5>| {
            t.into_data()
                .as_slice::<f32>()
                .map(<[f32]>::to_vec)
                .unwrap_or_default()
        };
        let blocks = |stages: &Vec<Vec<ConvBlock>>| {
            stages
                .iter()
                .flatten()
                .map(|b| data(b.conv.weight.val()))
                .collect::<Vec<_>>()
        };
        let mut out = blocks(&self.encoder);
        out.extend(self.transpconvs.iter().map(|t| data(t.weight.val())));
        out.extend(blocks(&self.decoder));
        out.extend(self.seg_layers.iter().map(|c| data(c.weight.val())));
        out
    }

    /// Logits of every decoder stage, highest resolution first (deep supervision order).
    pub fn forward(&self, x: Tensor<5>) -> Vec<Tensor<5>> {
        self.run(x, true)
    }

    /// Logits at full resolution only (inference).
    pub fn predict(&self, x: Tensor<5>) -> Tensor<5> {
        let mut out = self.run(x, false);
        out.swap_remove(0)
    }

    fn run(&self, x: Tensor<5>, all_heads: bool) -> Vec<Tensor<5>> {
        let mut skips = Vec::with_capacity(self.encoder.len());
        let mut h = x;
        for st in &self.encoder {
            for b in st {
                h = b.forward(h);
            }
            skips.push(h.clone());
        }
        let mut outputs = Vec::new();
        let mut low = skips.pop().unwrap_or(h);
        let last = self.decoder.len().saturating_sub(1);
        for (s, ((t, st), seg)) in self
            .transpconvs
            .iter()
            .zip(&self.decoder)
            .zip(&self.seg_layers)
            .enumerate()
        {
            let up = t.forward(low);
            let skip = skips.pop().unwrap_or_else(|| up.clone());
            let mut x = Tensor::cat(vec![up, skip], 1);
            for b in st {
                x = b.forward(x);
            }
            if all_heads || s == last {
                outputs.push(seg.forward(x.clone()));
            }
            low = x;
        }
        outputs.reverse();
        outputs
    }
}
