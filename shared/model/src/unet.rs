//! nnU-Net's PlainConvUNet (dynamic_network_architectures) in burn: per stage two
//! conv-InstanceNorm-LeakyReLU blocks, strided convs down, transposed convs up, skip
//! concatenation, a 1x1x1 segmentation head per decoder stage (deep supervision).

use crate::rng::Rng;
use burn::module::{Module, Param};
use burn::nn::conv::{Conv3d, Conv3dConfig, ConvTranspose3d, ConvTranspose3dConfig};
use burn::nn::{Initializer, InstanceNorm, InstanceNormConfig, PaddingConfig3d};
use burn::tensor::activation::leaky_relu;
use burn::tensor::{Device, Tensor, TensorData};
pub use statapp_nnunet::model_dir::UNetConfig;

/// Conv, InstanceNorm, LeakyReLU (or nonlinearity first when the plan says `nonlin_first`).
#[derive(Module, Debug)]
pub struct ConvBlock {
    conv: Conv3d,
    norm: InstanceNorm,
    negative_slope: f64,
    nonlin_first: bool,
}

impl ConvBlock {
    fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        let x = self.conv.forward(x);
        if self.nonlin_first {
            self.norm.forward(leaky_relu(x, self.negative_slope))
        } else {
            leaky_relu(self.norm.forward(x), self.negative_slope)
        }
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

/// Where a network's parameters come from, named by their key in nnU-Net's state dict.
pub trait ParamSource {
    type Error;
    /// A conv or transposed-conv weight; `fan_in` is what He initialisation divides by.
    fn weight(&mut self, key: &str, shape: [usize; 5]) -> Result<Tensor<5>, Self::Error>;
    /// A bias, or an InstanceNorm's weight (`ones`) or bias.
    fn vector(&mut self, key: &str, n: usize, ones: bool) -> Result<Tensor<1>, Self::Error>;
}

/// He (kaiming normal, a = 0.01, fan_in) weights as the original trainer's
/// `SeededInitWeights_He`: std = sqrt(2 / (1 + a^2)) / sqrt(fan_in), `fan_in = dims[1] * k^3`
/// (for transposed convs that is the output channels, as in torch); biases zero, norms identity.
pub struct HeInit<'a> {
    rng: Rng,
    device: &'a Device,
}

impl std::fmt::Debug for HeInit<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HeInit")
    }
}

impl<'a> HeInit<'a> {
    pub fn new(seed: u64, device: &'a Device) -> Self {
        Self {
            rng: Rng::new(seed ^ 0x0005_EED0_F4E7),
            device,
        }
    }
}

impl ParamSource for HeInit<'_> {
    type Error = std::convert::Infallible;

    fn weight(&mut self, _key: &str, shape: [usize; 5]) -> Result<Tensor<5>, Self::Error> {
        let fan_in = (shape[1] * shape[2] * shape[3] * shape[4]) as f64;
        let std = (2.0 / (1.0 + 0.01f64 * 0.01)).sqrt() / fan_in.sqrt();
        let n: usize = shape.iter().product();
        let values: Vec<f32> = (0..n).map(|_| (self.rng.normal() * std) as f32).collect();
        Ok(Tensor::from_data(
            TensorData::new(values, shape),
            self.device,
        ))
    }

    fn vector(&mut self, _key: &str, n: usize, ones: bool) -> Result<Tensor<1>, Self::Error> {
        Ok(if ones {
            Tensor::ones([n], self.device)
        } else {
            Tensor::zeros([n], self.device)
        })
    }
}

/// Builds the layers in a fixed order (encoder, then per decoder stage: transposed conv, convs,
/// head), asking `src` for every parameter by its nnU-Net state-dict key.
struct Builder<'a, S: ParamSource> {
    cfg: &'a UNetConfig,
    src: &'a mut S,
    device: &'a Device,
}

impl<S: ParamSource> Builder<'_, S> {
    fn conv(
        &mut self,
        key: &str,
        [cin, cout]: [usize; 2],
        kernel: [usize; 3],
        stride: [usize; 3],
        bias: bool,
    ) -> Result<Conv3d, S::Error> {
        let mut c = Conv3dConfig::new([cin, cout], kernel)
            .with_stride(stride)
            .with_padding(PaddingConfig3d::Explicit(
                (kernel[0] - 1) / 2,
                (kernel[1] - 1) / 2,
                (kernel[2] - 1) / 2,
            ))
            .with_bias(bias)
            .with_initializer(Initializer::Zeros)
            .init(self.device);
        let shape = [cout, cin, kernel[0], kernel[1], kernel[2]];
        c.weight = Param::from_tensor(self.src.weight(&format!("{key}.weight"), shape)?);
        c.bias = self.bias(key, cout, bias)?;
        Ok(c)
    }

    /// `<key>.bias` of `n` values when the layer has one.
    fn bias(
        &mut self,
        key: &str,
        n: usize,
        present: bool,
    ) -> Result<Option<Param<Tensor<1>>>, S::Error> {
        if !present {
            return Ok(None);
        }
        let v = self.src.vector(&format!("{key}.bias"), n, false)?;
        Ok(Some(Param::from_tensor(v)))
    }

    fn block(
        &mut self,
        key: &str,
        channels: [usize; 2],
        kernel: [usize; 3],
        stride: [usize; 3],
    ) -> Result<ConvBlock, S::Error> {
        let l = self.cfg.layers;
        let conv = self.conv(
            &format!("{key}.conv"),
            channels,
            kernel,
            stride,
            l.conv_bias,
        )?;
        let mut norm = InstanceNormConfig::new(channels[1])
            .with_epsilon(l.norm_eps)
            .with_affine(l.norm_affine)
            .init(self.device);
        if l.norm_affine {
            let n = channels[1];
            norm.gamma = Some(Param::from_tensor(self.src.vector(
                &format!("{key}.norm.weight"),
                n,
                true,
            )?));
            norm.beta = Some(Param::from_tensor(self.src.vector(
                &format!("{key}.norm.bias"),
                n,
                false,
            )?));
        }
        Ok(ConvBlock {
            conv,
            norm,
            negative_slope: l.negative_slope,
            nonlin_first: l.nonlin_first,
        })
    }

    /// `n` blocks, the first mapping `cin -> cout` with `stride` (StackedConvBlocks).
    fn stage(
        &mut self,
        key: &str,
        n: usize,
        [cin, cout]: [usize; 2],
        kernel: [usize; 3],
        stride: [usize; 3],
    ) -> Result<Vec<ConvBlock>, S::Error> {
        (0..n)
            .map(|i| {
                let (c, st) = if i == 0 {
                    (cin, stride)
                } else {
                    (cout, [1, 1, 1])
                };
                self.block(&format!("{key}.convs.{i}"), [c, cout], kernel, st)
            })
            .collect()
    }

    fn transpconv(
        &mut self,
        key: &str,
        [below, skip]: [usize; 2],
        stride: [usize; 3],
    ) -> Result<ConvTranspose3d, S::Error> {
        let bias = self.cfg.layers.conv_bias;
        let mut t = ConvTranspose3dConfig::new([below, skip], stride)
            .with_stride(stride)
            .with_bias(bias)
            .with_initializer(Initializer::Zeros)
            .init(self.device);
        let shape = [below, skip, stride[0], stride[1], stride[2]];
        t.weight = Param::from_tensor(self.src.weight(&format!("{key}.weight"), shape)?);
        t.bias = self.bias(key, skip, bias)?;
        Ok(t)
    }

    fn build(&mut self) -> Result<PlainConvUNet, S::Error> {
        let cfg = self.cfg;
        let n = cfg.n_stages();
        let f = &cfg.features;
        let mut encoder = Vec::with_capacity(n);
        for s in 0..n {
            let cin = if s == 0 { cfg.in_channels } else { f[s - 1] };
            let key = format!("encoder.stages.{s}.0");
            encoder.push(self.stage(
                &key,
                cfg.n_conv[s],
                [cin, f[s]],
                cfg.kernel_sizes[s],
                cfg.strides[s],
            )?);
        }
        let (mut transpconvs, mut decoder, mut seg_layers) = (Vec::new(), Vec::new(), Vec::new());
        for s in 1..n {
            let (below, skip) = (f[n - s], f[n - s - 1]);
            let i = s - 1;
            transpconvs.push(self.transpconv(
                &format!("decoder.transpconvs.{i}"),
                [below, skip],
                cfg.strides[n - s],
            )?);
            decoder.push(self.stage(
                &format!("decoder.stages.{i}"),
                cfg.n_conv_decoder[i],
                [2 * skip, skip],
                cfg.kernel_sizes[n - s - 1],
                [1, 1, 1],
            )?);
            seg_layers.push(self.conv(
                &format!("decoder.seg_layers.{i}"),
                [skip, cfg.num_classes],
                [1, 1, 1],
                [1, 1, 1],
                true,
            )?);
        }
        Ok(PlainConvUNet {
            encoder,
            transpconvs,
            decoder,
            seg_layers,
        })
    }
}

impl PlainConvUNet {
    /// A network with seeded He initialisation (every conv weight, biases zero).
    pub fn new(cfg: &UNetConfig, seed: u64, device: &Device) -> Self {
        match Self::build(cfg, &mut HeInit::new(seed, device), device) {
            Ok(net) => net,
            Err(never) => match never {},
        }
    }

    /// A network whose every parameter comes from `src`, by its nnU-Net state-dict key.
    pub fn build<S: ParamSource>(
        cfg: &UNetConfig,
        src: &mut S,
        device: &Device,
    ) -> Result<Self, S::Error> {
        Builder { cfg, src, device }.build()
    }

    /// Every parameter under its nnU-Net state-dict key (canonical names, no aliases), in
    /// build order: the inverse of [`PlainConvUNet::build`] with a state dict.
    pub fn parameters(&self) -> Vec<(String, TensorData)> {
        type Out = Vec<(String, TensorData)>;
        fn conv(out: &mut Out, key: &str, c: &Conv3d) {
            out.push((format!("{key}.weight"), c.weight.val().into_data()));
            if let Some(b) = &c.bias {
                out.push((format!("{key}.bias"), b.val().into_data()));
            }
        }
        fn stage(out: &mut Out, key: &str, blocks: &[ConvBlock]) {
            for (i, b) in blocks.iter().enumerate() {
                let k = format!("{key}.convs.{i}");
                conv(out, &format!("{k}.conv"), &b.conv);
                for (name, p) in [("weight", &b.norm.gamma), ("bias", &b.norm.beta)] {
                    if let Some(p) = p {
                        out.push((format!("{k}.norm.{name}"), p.val().into_data()));
                    }
                }
            }
        }
        let mut out = Vec::new();
        for (s, blocks) in self.encoder.iter().enumerate() {
            stage(&mut out, &format!("encoder.stages.{s}.0"), blocks);
        }
        for (i, ((t, blocks), seg)) in self
            .transpconvs
            .iter()
            .zip(&self.decoder)
            .zip(&self.seg_layers)
            .enumerate()
        {
            let key = format!("decoder.transpconvs.{i}");
            out.push((format!("{key}.weight"), t.weight.val().into_data()));
            if let Some(b) = &t.bias {
                out.push((format!("{key}.bias"), b.val().into_data()));
            }
            stage(&mut out, &format!("decoder.stages.{i}"), blocks);
            conv(&mut out, &format!("decoder.seg_layers.{i}"), seg);
        }
        out
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

    /// Output channels of the segmentation heads.
    pub fn num_classes(&self) -> usize {
        self.seg_layers.first().map_or(0, |c| c.weight.dims()[0])
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
