//! The live source named on the command line, as the head of a pipeline.

use std::fmt;
use std::path::{Path, PathBuf};

/// The looping shapes-world clip of the toy bundle (112 px frames with their
/// truth; `make studio` passes a larger one it generates).
pub const TOY_CLIP: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/fixtures/toy-shapes-sam3/golden/clip/frame-%03d.png"
);

/// The default source: the clip of the toy bundle [`crate::cli::toy_bundle`]
/// names.
fn toy_clip() -> String {
    match samclipseg::installed::layout().and_then(|l| l.toy_bundle()) {
        Some(b) => format!("{}/golden/clip/frame-%03d.png", b.display()),
        None => TOY_CLIP.to_string(),
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// `frame-%03d.png`: a numbered image sequence from `start` (0 or 1),
    /// looped at `fps`.
    Sequence {
        pattern: PathBuf,
        start: u32,
        fps: u32,
    },
    /// One picture, repeated as a still stream.
    Picture(PathBuf),
    /// A video file, seeked back to its start at its end.
    File(PathBuf),
    /// A URI that uridecodebin plays (looped when it ends).
    Uri(String),
    /// A V4L2 camera device.
    Camera(PathBuf),
}

impl Source {
    pub fn from_arg(arg: Option<&str>) -> Result<Source, String> {
        let installed;
        let arg = match arg {
            Some(a) => a,
            None => {
                installed = toy_clip();
                installed.as_str()
            }
        };
        if arg.contains('"') {
            return Err(format!(
                "--source {arg:?}: a name with '\"' is not supported"
            ));
        }
        if let Some(device) = arg.strip_prefix("v4l2://") {
            return Ok(Source::Camera(PathBuf::from(device)));
        }
        if arg.starts_with("/dev/video") {
            return Ok(Source::Camera(PathBuf::from(arg)));
        }
        if arg.contains("://") {
            return Ok(Source::Uri(arg.to_string()));
        }
        let path = PathBuf::from(arg);
        if let Some(field) = number_field(arg) {
            if image_kind(&path).is_none() {
                return Err(format!(
                    "--source {arg}: an image sequence must be of .png or .jpg files"
                ));
            }
            let start = first_of_sequence(arg, field)?;
            return Ok(Source::Sequence {
                pattern: path,
                start,
                fps: 24,
            });
        }
        if !path.is_file() {
            return Err(format!("--source {arg}: no such file"));
        }
        Ok(if image_kind(&path).is_some() {
            Source::Picture(path)
        } else {
            Source::File(path)
        })
    }

    /// A gst-launch description ending in raw video of any format.
    pub fn launch(&self) -> String {
        match self {
            Source::Sequence {
                pattern,
                start,
                fps,
            } => {
                let (caps, dec) = image_kind(pattern).unwrap_or(("image/png", "pngdec"));
                format!(
                    "multifilesrc location=\"{}\" start-index={start} index={start} loop=true \
                     caps=\"{caps},framerate={fps}/1\" ! {dec}",
                    pattern.display()
                )
            }
            Source::Picture(path) => format!(
                "filesrc location=\"{}\" ! decodebin ! imagefreeze ! video/x-raw,framerate=24/1",
                path.display()
            ),
            Source::File(path) => format!("filesrc location=\"{}\" ! decodebin", path.display()),
            Source::Uri(uri) => format!("uridecodebin uri=\"{uri}\""),
            Source::Camera(device) => format!("v4l2src device=\"{}\"", device.display()),
        }
    }

    /// Whether the end of the stream should seek back to its start.
    pub fn loops_by_seeking(&self) -> bool {
        matches!(self, Source::File(_) | Source::Uri(_))
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Source::Sequence { pattern, fps, .. } => {
                write!(f, "{} (looped, {fps} frames/s)", pattern.display())
            }
            Source::Picture(p) => write!(f, "{} (still)", p.display()),
            Source::File(p) => write!(f, "{} (looped)", p.display()),
            Source::Uri(u) => write!(f, "{u}"),
            Source::Camera(d) => write!(f, "camera {}", d.display()),
        }
    }
}

/// Caps and decoder of a picture file, by its extension.
fn image_kind(path: &Path) -> Option<(&'static str, &'static str)> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    match ext.as_str() {
        "png" => Some(("image/png", "pngdec")),
        "jpg" | "jpeg" => Some(("image/jpeg", "jpegdec")),
        _ => None,
    }
}

/// Where a printf-style number field (`%d`, `%03d`) sits in `text`: (start,
/// end, zero-padded width). A `%` that is not one (`clip%20.mp4`) is a name.
fn number_field(text: &str) -> Option<(usize, usize, usize)> {
    let start = text.find('%')?;
    let rest = &text[start + 1..];
    let digits = rest.chars().take_while(|c| c.is_ascii_digit()).count();
    if !rest[digits..].starts_with('d') {
        return None;
    }
    let width = rest[..digits].parse().unwrap_or(0);
    Some((start, start + 1 + digits + 1, width))
}

/// The first number of a sequence: 0, or 1 as ffmpeg numbers its files.
fn first_of_sequence(
    text: &str,
    (start, end, width): (usize, usize, usize),
) -> Result<u32, String> {
    let name = |n: u32| format!("{}{n:0width$}{}", &text[..start], &text[end..]);
    (0..=1)
        .find(|&n| Path::new(&name(n)).is_file())
        .ok_or_else(|| {
            format!(
                "--source {text}: neither {} nor {} exists",
                name(0),
                name(1)
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_of_source() {
        assert_eq!(
            Source::from_arg(Some("/dev/video2")).unwrap(),
            Source::Camera("/dev/video2".into())
        );
        assert_eq!(
            Source::from_arg(Some("v4l2:///dev/video0")).unwrap(),
            Source::Camera("/dev/video0".into())
        );
        assert!(matches!(
            Source::from_arg(Some("rtsp://cam/stream")).unwrap(),
            Source::Uri(_)
        ));
        assert!(matches!(
            Source::from_arg(None).unwrap(),
            Source::Sequence { .. }
        ));
        let e = Source::from_arg(Some("/nonexistent/clip.mkv")).unwrap_err();
        assert!(e.contains("no such file"), "{e}");
        let e = Source::from_arg(Some("/nonexistent/frame-%03d.png")).unwrap_err();
        assert!(
            e.contains("neither /nonexistent/frame-000.png nor /nonexistent/frame-001.png"),
            "{e}"
        );
        assert_eq!(number_field("a-%03d.png"), Some((2, 6, 3)));
        // ffmpeg numbers from 1.
        let dir = std::env::temp_dir().join(format!("studio-seq-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("f-0001.jpg"), b"x").unwrap();
        let pattern = dir.join("f-%04d.jpg").display().to_string();
        match Source::from_arg(Some(&pattern)).unwrap() {
            Source::Sequence { start, .. } => assert_eq!(start, 1),
            other => panic!("{other:?}"),
        }
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(number_field("clip%20.mp4"), None);
        let e = Source::from_arg(Some("/nonexistent/clip%20.mp4")).unwrap_err();
        assert!(e.contains("no such file"), "{e}");
    }
}
