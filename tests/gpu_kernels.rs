//! The CUDA kernels against their CPU twins, on random and real frames of
//! every layout, odd sizes and padded strides. Without a CUDA driver each
//! comparison prints "skipped: no CUDA driver" and returns; the last test
//! checks that this case is a clear error instead. (The comparisons are not
//! run with the twins standing in for the kernels: a function compared with
//! itself passes whatever it computes.)

mod gpu_common;

use std::path::Path;

use gpu_common::{
    Layout, MAIN_LAYOUTS, OTHER_LAYOUTS, OwnedFrame, Rng, diff_f32, mask_logits, photo_rgb,
    random_rgb,
};
use samclipseg::gpu::{GpuKernels, driver_present};
use samclipseg::image::frame::{PackedLayout, YuvMatrix};
use samclipseg::image::postprocess::{mask_from_logits, sigmoid};
use samclipseg::image::preprocess::{fused_mean_std, preprocess};
use samclipseg::image::render::{Canvas, alpha_from_logits};
use samclipseg::image::resize::resize_plane_bilinear;
use samclipseg::model::bundle::PreprocessSpec;

/// The kernels, or None (after saying so) where no CUDA driver is installed.
/// With a driver, failing to start is a test failure.
fn kernels(test: &str) -> Option<GpuKernels> {
    if !driver_present() {
        println!("{test}: skipped: no CUDA driver (libcuda.so.1 not found)");
        return None;
    }
    match GpuKernels::new(0) {
        Ok(k) => Some(k),
        Err(e) => panic!("a CUDA driver is installed but the kernels did not start: {e}"),
    }
}

fn spec(size: u32) -> PreprocessSpec {
    PreprocessSpec {
        image_size: size,
        resample: "bilinear".into(),
        rescale_factor: 1.0 / 255.0,
        image_mean: [0.5, 0.5, 0.5],
        image_std: [0.5, 0.5, 0.5],
    }
}

/// The engine input from the GPU must be the CPU's, bit for bit: a single
/// differing value fails (only masks tolerate pixels on the threshold).
fn compare_preprocess(k: &mut GpuKernels, f: &OwnedFrame, spec: &PreprocessSpec, what: &str) {
    let frame = f.frame();
    let cpu = preprocess(&frame, spec).unwrap();
    let gpu = k
        .preprocess(&frame, spec)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(gpu.shape, cpu.shape, "{what}");
    let (max, n) = diff_f32(&gpu.data, &cpu.data);
    let level = 1.0
        / fused_mean_std(spec)
            .1
            .iter()
            .copied()
            .fold(f32::MAX, f32::min);
    assert!(
        n == 0,
        "{what}: GPU and CPU differ at {n} of {} values, by up to {max} ({} uint8 levels); \
         preprocessing must be bit-exact",
        cpu.data.len(),
        max / level
    );
}

#[test]
fn preprocess_matches_the_cpu_on_random_frames() {
    if let Some(mut k) = kernels("preprocess_matches_the_cpu_on_random_frames") {
        preprocess_random(&mut k);
    }
}

fn preprocess_random(k: &mut GpuKernels) {
    let mut rng = Rng::new(7);
    let sizes = [
        (1, 1),
        (2, 3),
        (37, 23),
        (112, 112),
        (112, 70),
        (70, 112),
        (641, 361),
        (3, 400),
    ];
    for (w, h) in sizes {
        let rgb = random_rgb(w, h, &mut rng);
        for layout in MAIN_LAYOUTS.iter().chain(&OTHER_LAYOUTS) {
            for (pad, matrix) in [(0, YuvMatrix::Bt601), (13, YuvMatrix::Bt709)] {
                let f = OwnedFrame::from_rgb(&rgb, w, h, *layout, pad, matrix, &mut rng);
                let what = format!("{} {w}x{h} pad {pad} {matrix:?} -> 112", layout.name());
                compare_preprocess(k, &f, &spec(112), &what);
            }
        }
    }
    // The real model's input size, with an unusual normalisation.
    let odd_spec = PreprocessSpec {
        image_mean: [0.485, 0.456, 0.406],
        image_std: [0.229, 0.224, 0.225],
        ..spec(1008)
    };
    let rgb = random_rgb(641, 361, &mut rng);
    for layout in MAIN_LAYOUTS {
        let f = OwnedFrame::from_rgb(&rgb, 641, 361, layout, 5, YuvMatrix::Bt601, &mut rng);
        compare_preprocess(
            k,
            &f,
            &odd_spec,
            &format!("{} 641x361 -> 1008", layout.name()),
        );
    }
}

#[test]
fn preprocess_matches_the_cpu_on_real_frames() {
    if let Some(mut k) = kernels("preprocess_matches_the_cpu_on_real_frames") {
        preprocess_real(&mut k);
    }
}

fn preprocess_real(k: &mut GpuKernels) {
    let mut rng = Rng::new(11);
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-sam3/golden");
    for (name, w, h) in [
        ("astronaut.png", 1920, 1080),
        ("chelsea.png", 640, 360),
        ("coffee.png", 1279, 719),
    ] {
        let rgb = photo_rgb(&golden.join(name), w, h);
        for layout in MAIN_LAYOUTS {
            let f = OwnedFrame::from_rgb(&rgb, w, h, layout, 64, YuvMatrix::Bt709, &mut rng);
            for size in [112, 1008] {
                let what = format!("{name} {} {w}x{h} -> {size}", layout.name());
                compare_preprocess(k, &f, &spec(size), &what);
            }
        }
    }
}

/// Pixels where GPU and CPU masks may legitimately differ: the up-sampled
/// probability lies within a hair of the threshold (the device's sigmoid may
/// be one ulp off the host's expf).
fn near_threshold(
    logits: &[f32],
    mask_size: (usize, usize),
    size: (usize, usize),
    thr: f32,
) -> Vec<bool> {
    let probs: Vec<f32> = logits.iter().map(|v| sigmoid(*v)).collect();
    let up = resize_plane_bilinear(&probs, mask_size.0, mask_size.1, size.0, size.1);
    up.iter().map(|p| (p - thr).abs() < 1e-5).collect()
}

/// (mask size, image size, number of masks).
type MaskCase = ((usize, usize), (usize, usize), usize);

const MASK_CASES: [MaskCase; 7] = [
    ((32, 32), (640, 360), 3),
    ((32, 32), (37, 23), 2),
    ((288, 288), (1920, 1080), 2),
    ((32, 32), (1921, 1081), 1),
    ((5, 3), (7, 11), 4),
    ((16, 16), (16, 16), 1),
    ((32, 32), (640, 360), 0),
];

#[test]
fn masks_match_the_cpu() {
    if let Some(mut k) = kernels("masks_match_the_cpu") {
        masks(&mut k);
    }
}

fn masks(k: &mut GpuKernels) {
    let mut rng = Rng::new(3);
    for (mask_size, size, n) in MASK_CASES {
        for thr in [0.5, 0.3] {
            let logits = mask_logits(n, mask_size.0, mask_size.1, &mut rng);
            let gpu = k.masks_from_logits(&logits, mask_size, size, thr).unwrap();
            assert_eq!(gpu.len(), n);
            let per = mask_size.0 * mask_size.1;
            for (i, g) in gpu.iter().enumerate() {
                let m = &logits[i * per..(i + 1) * per];
                let cpu = mask_from_logits(m, mask_size, size, thr);
                assert_eq!((g.width, g.height), (cpu.width, cpu.height));
                let near = near_threshold(m, mask_size, size, thr);
                let mut differ = 0;
                for (p, (a, b)) in g.data.iter().zip(&cpu.data).enumerate() {
                    if a != b {
                        differ += 1;
                        assert!(
                            near[p],
                            "{mask_size:?} -> {size:?} mask {i} thr {thr}: pixel {p} is {a} on the GPU, {b} on the CPU, away from the threshold"
                        );
                    }
                }
                if differ > 0 {
                    println!(
                        "{mask_size:?} -> {size:?} mask {i}: {differ} pixels on the threshold differ"
                    );
                }
            }
        }
    }
}

#[test]
fn alpha_matches_the_cpu_and_leaves_other_bytes_alone() {
    if let Some(mut k) = kernels("alpha_matches_the_cpu_and_leaves_other_bytes_alone") {
        alpha(&mut k);
    }
}

fn alpha(k: &mut GpuKernels) {
    let mut rng = Rng::new(5);
    let layouts = [
        PackedLayout::Rgba,
        PackedLayout::Bgra,
        PackedLayout::Argb,
        PackedLayout::Abgr,
        PackedLayout::Ayuv,
    ];
    for (mask_size, (w, h), n) in MASK_CASES {
        for layout in layouts {
            for pad in [0, 7] {
                let logits = mask_logits(n, mask_size.0, mask_size.1, &mut rng);
                let rgb = random_rgb(w, h, &mut rng);
                let f = OwnedFrame::from_rgb(
                    &rgb,
                    w,
                    h,
                    Layout::Packed(layout),
                    pad,
                    YuvMatrix::Bt601,
                    &mut rng,
                );
                let stride = f.planes[0].1;
                let mut cpu = f.planes[0].0.clone();
                let mut gpu = cpu.clone();
                let canvas = |data| Canvas {
                    data,
                    width: w,
                    height: h,
                    stride,
                    layout,
                };
                assert!(alpha_from_logits(
                    &mut canvas(&mut cpu),
                    &logits,
                    mask_size,
                    0.5
                ));
                k.alpha_from_logits(&mut canvas(&mut gpu), &logits, mask_size, 0.5)
                    .unwrap();
                let per = mask_size.0 * mask_size.1;
                let near: Vec<Vec<bool>> = (0..n)
                    .map(|i| {
                        near_threshold(&logits[i * per..(i + 1) * per], mask_size, (w, h), 0.5)
                    })
                    .collect();
                let a = layout.alpha_offset().unwrap();
                for (i, (g, c)) in gpu.iter().zip(&cpu).enumerate() {
                    if g == c {
                        continue;
                    }
                    let (y, x) = (i / stride, (i % stride) / 4);
                    assert!(
                        i % stride < w * 4 && i % 4 == a && near.iter().any(|m| m[y * w + x]),
                        "{layout:?} {w}x{h} pad {pad}, {n} masks {mask_size:?}: byte {i} is {g} on the GPU, {c} on the CPU"
                    );
                }
            }
        }
    }
}

#[test]
fn bad_arguments_are_errors_not_crashes() {
    let Some(mut k) = kernels("bad_arguments_are_errors_not_crashes") else {
        return;
    };
    assert!(k.masks_from_logits(&[0.0; 5], (2, 2), (4, 4), 0.5).is_err());
    let mut px = vec![0u8; 4 * 4 * 3];
    let mut c = Canvas {
        data: &mut px,
        width: 4,
        height: 4,
        stride: 12,
        layout: PackedLayout::Rgb,
    };
    let e = k
        .alpha_from_logits(&mut c, &[0.0; 4], (2, 2), 0.5)
        .unwrap_err();
    assert!(e.to_string().contains("no alpha channel"), "{e}");
}

#[test]
fn without_a_driver_starting_the_kernels_is_an_error_naming_it() {
    if driver_present() {
        println!("a CUDA driver is installed: the missing-driver error cannot be checked here");
        return;
    }
    let e = match GpuKernels::new(0) {
        Ok(_) => panic!("GpuKernels started without libcuda.so"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("no CUDA driver"), "{e}");
    assert!(e.contains("libcuda.so.1"), "{e}");
    assert!(
        e.to_lowercase().contains("install the nvidia driver"),
        "{e}"
    );
}
