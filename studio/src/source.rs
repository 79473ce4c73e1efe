//! The live source named on the command line, as the head of a pipeline.

use std::fmt;
use std::path::{Path, PathBuf};

/// The looping shapes-world clip of the toy bundle (112 px frames with their
/// truth; `make studio` passes a larger one it generates).
pub const TOY_CLIP: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/fixtures/toy-shapes-sam3/golden/clip/frame-%03d.png"
);

#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// `frame-%03d.png`: a numbered image sequence, looped at `fps`.
    Sequence { pattern: PathBuf, fps: u32 },
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
        let arg = arg.unwrap_or(TOY_CLIP);
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
        if arg.contains('%') {
            let first = first_of_sequence(&path)?;
            if image_kind(&first).is_none() {
                return Err(format!(
                    "--source {arg}: an image sequence must be of .png or .jpg files"
                ));
            }
            return Ok(Source::Sequence {
                pattern: path,
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
            Source::Sequence { pattern, fps } => {
                let (caps, dec) = image_kind(pattern).unwrap_or(("image/png", "pngdec"));
                format!(
                    "multifilesrc location=\"{}\" index=0 loop=true caps=\"{caps},framerate={fps}/1\" ! {dec}",
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
            Source::Sequence { pattern, fps } => {
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

/// The file `index=0` of a printf-style pattern names, which must exist.
fn first_of_sequence(pattern: &Path) -> Result<PathBuf, String> {
    let text = pattern.display().to_string();
    let start = text.find('%').unwrap_or(0);
    let rest = &text[start + 1..];
    let end = rest.find('d').ok_or_else(|| {
        format!("--source {text}: the pattern needs a %d field (e.g. frame-%03d.png)")
    })?;
    let width: usize = rest[..end].trim_start_matches('0').parse().unwrap_or(0);
    let first = format!("{}{:0width$}{}", &text[..start], 0, &rest[end + 1..]);
    let path = PathBuf::from(first);
    if !path.is_file() {
        return Err(format!(
            "--source {text}: its first file {} does not exist",
            path.display()
        ));
    }
    Ok(path)
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
        assert!(e.contains("frame-000.png does not exist"), "{e}");
    }
}
