//! Command line: what the studio may open (bundle, source) and where it listens.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use clap::Parser;

/// The toy shapes-world bundle of this repository: the default when the
/// binary runs from the tree it was built in.
pub const TOY_BUNDLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/fixtures/toy-shapes-sam3"
);

/// The default bundle: the toy bundle installed with this program
/// (`PREFIX/share/samclipseg/toy-shapes-sam3`) when it is installed, else
/// the tree's.
pub fn toy_bundle() -> PathBuf {
    samclipseg::installed::layout()
        .and_then(|l| l.toy_bundle())
        .unwrap_or_else(|| PathBuf::from(TOY_BUNDLE))
}

#[derive(Debug, Parser)]
#[command(
    name = "samclipseg-studio",
    version,
    about = "A web page to try samclipseg prompts on a live pipeline and on pictures"
)]
pub struct Args {
    /// Engine bundle directory (default: the toy shapes-world bundle installed
    /// with the studio, or of the tree it was built in)
    #[arg(long)]
    pub bundle: Option<PathBuf>,
    /// Live source: a video or image file, a URI (file://, http://, rtsp://),
    /// a V4L2 camera (/dev/video0 or v4l2:///dev/video0), or a numbered image
    /// sequence (frame-%03d.png, looped). Default: the shapes-world clip of the
    /// toy bundle, looped
    #[arg(long)]
    pub source: Option<String>,
    /// Port to listen on; 0 picks a free one (printed at start)
    #[arg(long, default_value_t = 7860)]
    pub port: u16,
    /// Address to listen on; anything but loopback is announced loudly
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub bind: IpAddr,
    /// Host name (or name:port) the studio answers to when bound off
    /// loopback; repeat for more. Default: the bound address itself (loopback
    /// names only when bound to 0.0.0.0 or ::). Requests naming any other
    /// Host are refused, against DNS rebinding
    #[arg(long = "allow-host", value_name = "NAME")]
    pub allow_host: Vec<String>,
    /// Memory for kept picture results, in MB: the oldest results are
    /// dropped first to stay under it (the newest is always kept)
    #[arg(long, default_value_t = 512)]
    pub results_mb: u64,
    /// Size of the live frames the element sees, WIDTHxHEIGHT (the source is
    /// scaled, keeping its aspect ratio with borders)
    #[arg(long, default_value = "640x360")]
    pub size: String,
}

impl Args {
    pub fn bundle_path(&self) -> Result<PathBuf, String> {
        let path = self.bundle.clone().unwrap_or_else(toy_bundle);
        if !path.join("bundle.toml").is_file() {
            return Err(format!(
                "no bundle at {} (bundle.toml missing); name one with --bundle DIR",
                path.display()
            ));
        }
        Ok(path.canonicalize().unwrap_or(path))
    }

    /// The Host names answered: loopback names when bound to loopback or
    /// to every address, else the bound address; plus `--allow-host`.
    pub fn allowed_hosts(&self) -> crate::api::Hosts {
        let mut names: Vec<String> = self
            .allow_host
            .iter()
            .map(|n| n.trim().to_ascii_lowercase())
            .collect();
        let loopback = self.bind.is_loopback() || self.bind.is_unspecified();
        if !loopback {
            names.push(match self.bind {
                IpAddr::V4(ip) => ip.to_string(),
                IpAddr::V6(ip) => format!("[{ip}]"),
            });
        }
        crate::api::Hosts { loopback, names }
    }

    pub fn frame_size(&self) -> Result<(u32, u32), String> {
        let bad = || {
            format!(
                "--size {:?}: expected WIDTHxHEIGHT with both between 16 and 4096, e.g. 640x360",
                self.size
            )
        };
        let (w, h) = self.size.split_once('x').ok_or_else(bad)?;
        let w: u32 = w.trim().parse().map_err(|_| bad())?;
        let h: u32 = h.trim().parse().map_err(|_| bad())?;
        if !(16..=4096).contains(&w) || !(16..=4096).contains(&h) {
            return Err(bad());
        }
        Ok((w, h))
    }
}

/// Why the listener could not start, said so that the user knows what to do.
pub fn bind_error(addr: &SocketAddr, e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::AddrInUse => format!(
            "port {} on {} is already in use (another samclipseg-studio?); stop it, choose \
             another port with --port, or --port 0 for a free one",
            addr.port(),
            addr.ip()
        ),
        std::io::ErrorKind::PermissionDenied => format!(
            "not allowed to listen on port {} of {} (ports below 1024 need privileges); choose \
             another with --port",
            addr.port(),
            addr.ip()
        ),
        _ => format!("cannot listen on {addr}: {e}"),
    }
}
