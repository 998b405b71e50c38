//! Pictures: grids of grey or colour images as PNG, written atomically.

use std::path::Path;

use anyhow::{Context, Result};
use ndarray::ArrayView2;
use vae_data::ImageShape;
use vae_data::atomic::write_atomic;

/// Pixels of padding between and around tiles (torchvision's `make_grid` default).
pub const PAD: usize = 2;

/// An 8-bit picture, grey (1 channel) or RGB (3).
#[derive(Clone, Debug, PartialEq)]
pub struct Picture {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Values per pixel: 1 or 3.
    pub channels: usize,
    /// Row-major pixels, the channels of a pixel side by side (as PNG stores them).
    pub pixels: Vec<u8>,
}

/// The side, in pixels, a tile should at least have on screen.
pub const MIN_TILE: usize = 28;

/// The picture scale for `h x w` images: `given`, else the smallest integer factor that
/// makes a tile at least [`MIN_TILE`] pixels on its longer side (1 for MNIST).
pub fn scale_for(given: Option<usize>, h: usize, w: usize) -> Result<usize> {
    match given {
        Some(s) => check_scale(s).map(|()| s).map_err(|m| anyhow::anyhow!("--scale {m}")),
        None => Ok(MIN_TILE.div_ceil(h.max(w).max(1)).max(1)),
    }
}

/// Checks a magnification (1 to 64); the error follows the setting's name.
pub fn check_scale(s: usize) -> std::result::Result<(), String> {
    match s {
        0 => Err("must be at least 1".into()),
        s if s > 64 => Err(format!("must be at most 64, got {s}")),
        _ => Ok(()),
    }
}

impl Picture {
    /// The picture magnified `s` times (each pixel an `s x s` block).
    pub fn upscaled(&self, s: usize) -> Picture {
        if s <= 1 {
            return self.clone();
        }
        let c = self.channels;
        let (width, height) = (self.width * s, self.height * s);
        let mut pixels = Vec::with_capacity(width * height * c);
        for row in self.pixels.chunks_exact((self.width * c).max(1)) {
            let wide: Vec<u8> = row
                .chunks_exact(c)
                .flat_map(|px| std::iter::repeat_n(px, s).flatten().copied())
                .collect();
            for _ in 0..s {
                pixels.extend_from_slice(&wide);
            }
        }
        Picture {
            width,
            height,
            channels: c,
            pixels,
        }
    }
}

/// `[0, 1]` to a byte, clamping (Gaussian decoders can leave the interval).
pub fn to_byte(v: f32) -> u8 {
    (v.clamp(0.0, 1.0) * 255.0).round() as u8
}

/// Tiles the rows of `images` (each an image of `shape`, channels outermost, values in
/// [0, 1]) left to right, top to bottom, `cols` per row, with [`PAD`] black pixels between
/// and around them.
pub fn tile(images: ArrayView2<f32>, shape: ImageShape, cols: usize) -> Picture {
    let (h, w, ch) = (shape.height, shape.width, shape.channels);
    let n = images.nrows();
    let cols = cols.max(1).min(n.max(1));
    let rows = n.div_ceil(cols).max(1);
    let width = cols * (w + PAD) + PAD;
    let height = rows * (h + PAD) + PAD;
    let mut pixels = vec![0u8; width * height * ch];
    for (k, img) in images.rows().into_iter().enumerate() {
        let (r, c) = (k / cols, k % cols);
        let (y0, x0) = (PAD + r * (h + PAD), PAD + c * (w + PAD));
        for y in 0..h {
            for x in 0..w {
                for p in 0..ch {
                    pixels[((y0 + y) * width + x0 + x) * ch + p] = to_byte(img[(p * h + y) * w + x]);
                }
            }
        }
    }
    Picture {
        width,
        height,
        channels: ch,
        pixels,
    }
}

/// Cuts a grey picture made by [`tile`] back into its tiles (as bytes), in order.
pub fn untile(g: &Picture, h: usize, w: usize, n: usize, cols: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|k| {
            let (r, c) = (k / cols, k % cols);
            let (y0, x0) = (PAD + r * (h + PAD), PAD + c * (w + PAD));
            (0..h)
                .flat_map(|y| (0..w).map(move |x| (y, x)))
                .map(|(y, x)| g.pixels[(y0 + y) * g.width + x0 + x])
                .collect()
        })
        .collect()
}

/// Encodes a picture as PNG (grey or RGB).
pub fn encode_png(g: &Picture) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, g.width as u32, g.height as u32);
        enc.set_color(if g.channels == 3 {
            png::ColorType::Rgb
        } else {
            png::ColorType::Grayscale
        });
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header()?;
        w.write_image_data(&g.pixels)?;
    }
    Ok(out)
}

/// Writes a picture as a PNG file, atomically.
pub fn write_png(path: &Path, g: &Picture) -> Result<()> {
    let bytes = encode_png(g)?;
    write_atomic(path, &bytes).with_context(|| format!("writing {}", path.display()))
}

/// Reads an 8-bit grey or RGB PNG (as written by [`write_png`]).
pub fn read_png(path: &Path) -> Result<Picture> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut dec = png::Decoder::new(std::io::BufReader::new(f)).read_info()?;
    let mut buf = vec![0; dec.output_buffer_size().context("PNG too large")?];
    let info = dec.next_frame(&mut buf)?;
    let channels = match (info.color_type, info.bit_depth) {
        (png::ColorType::Grayscale, png::BitDepth::Eight) => 1,
        (png::ColorType::Rgb, png::BitDepth::Eight) => 3,
        _ => anyhow::bail!("{}: not an 8-bit grey or RGB PNG", path.display()),
    };
    buf.truncate(info.buffer_size());
    Ok(Picture {
        width: info.width as usize,
        height: info.height as usize,
        channels,
        pixels: buf,
    })
}

#[cfg(test)]
mod tests {
    use ndarray::Array2;

    use super::*;

    #[test]
    fn tiles_come_back_in_order() {
        // Seven distinct 3x2 images, tiled three per row.
        let imgs = Array2::from_shape_fn((7, 6), |(k, p)| ((k * 6 + p) as f32) / 41.0);
        let g = tile(imgs.view(), ImageShape::grey(3, 2), 3);
        assert_eq!((g.width, g.height), (3 * 4 + 2, 3 * 5 + 2));
        let back = untile(&g, 3, 2, 7, 3);
        for (k, t) in back.iter().enumerate() {
            let want: Vec<u8> = imgs.row(k).iter().map(|&v| to_byte(v)).collect();
            assert_eq!(t, &want, "tile {k}");
        }
        let p = std::env::temp_dir().join(format!("vae-tile-{}.png", std::process::id()));
        write_png(&p, &g).unwrap();
        assert_eq!(read_png(&p).unwrap(), g);
    }

    #[test]
    fn colour_tiles_interleave_the_planes() {
        // Two 1x2 RGB images: planes R, G, B of 2 values each.
        let imgs = Array2::from_shape_fn((2, 6), |(k, p)| (k * 6 + p) as f32 / 11.0);
        let g = tile(
            imgs.view(),
            ImageShape {
                height: 1,
                width: 2,
                channels: 3,
            },
            2,
        );
        assert_eq!(g.channels, 3);
        let px = |x: usize, y: usize| &g.pixels[(y * g.width + x) * 3..(y * g.width + x) * 3 + 3];
        let want = |k: usize, x: usize| [0, 1, 2].map(|c| to_byte(imgs[[k, c * 2 + x]]));
        assert_eq!(px(PAD + 1, PAD), want(0, 1));
        assert_eq!(px(PAD + 2 + PAD, PAD), want(1, 0));
        let big = g.upscaled(2);
        assert_eq!(
            &big.pixels[((2 * PAD) * big.width + 2 * PAD + 2) * 3..][..3],
            want(0, 1)
        );
        let p = std::env::temp_dir().join(format!("vae-tile-rgb-{}.png", std::process::id()));
        write_png(&p, &g).unwrap();
        assert_eq!(read_png(&p).unwrap(), g);
    }

    #[test]
    fn small_images_are_magnified_to_a_visible_tile() {
        assert_eq!(scale_for(None, 28, 28).unwrap(), 1);
        assert_eq!(scale_for(None, 8, 8).unwrap(), 4);
        assert_eq!(scale_for(None, 27, 27).unwrap(), 2);
        assert_eq!(scale_for(Some(3), 28, 28).unwrap(), 3);
        assert!(scale_for(Some(0), 8, 8).is_err());
        let g = Picture {
            width: 2,
            height: 1,
            channels: 1,
            pixels: vec![1, 2],
        };
        let u = g.upscaled(2);
        assert_eq!((u.width, u.height), (4, 2));
        assert_eq!(u.pixels, vec![1, 1, 2, 2, 1, 1, 2, 2]);
    }
}
