//! The element's property values, split by when they apply: what `start()`
//! reads once (the bundle, the backend, the output mode) and what each frame
//! uses, which `set_property` turns into a shared [`FrameSetup`].

use std::path::PathBuf;
use std::sync::Arc;

use samclipseg::model::bundle::Manifest;
use samclipseg::{BackendOptions, FrameSettings, PostprocessOptions, Request, Threshold};

/// What the element does with the result besides the metadata (property `output-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstSamClipSegOutputMode")]
pub enum OutputMode {
    /// Pixels untouched; results only as metadata.
    #[default]
    #[enum_value(name = "Meta: attach metadata only, pixels untouched", nick = "meta")]
    Meta = 0,
    /// Alpha = union of the masks (255 inside an object, 0 elsewhere).
    #[enum_value(
        name = "Alpha: write the union of the masks into the alpha channel",
        nick = "alpha"
    )]
    Alpha = 1,
    /// Translucent masks, outlines and labels drawn into the picture.
    #[enum_value(
        name = "Overlay: draw masks, outlines and labels (packed RGB formats)",
        nick = "overlay"
    )]
    Overlay = 2,
}

impl OutputMode {
    /// The property's nick, for messages.
    pub fn nick(self) -> &'static str {
        match self {
            OutputMode::Meta => "meta",
            OutputMode::Alpha => "alpha",
            OutputMode::Overlay => "overlay",
        }
    }
}

/// What follows objects from frame to frame (property `tracker`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstSamClipSegTracker")]
pub enum TrackerMode {
    /// `sam3` when the bundle has SAM 3's tracker engines, else `overlap`.
    #[default]
    #[enum_value(
        name = "Auto: sam3 when the bundle has tracker engines, else overlap",
        nick = "auto"
    )]
    Auto = 0,
    /// The detector on every result, instances linked by mask overlap.
    #[enum_value(
        name = "Overlap: detector results linked to earlier ones by mask overlap",
        nick = "overlap"
    )]
    Overlap = 1,
    /// SAM 3's video tracker: memory of each object's past masks.
    #[enum_value(
        name = "SAM 3: the model's video tracker carries each object with its memory",
        nick = "sam3"
    )]
    Sam3 = 2,
}

impl TrackerMode {
    /// Whether the stream runs SAM 3's tracker on a bundle that has (or not)
    /// its engines; an error for `sam3` without them.
    pub fn uses_sam3(self, bundle_has_tracker: bool) -> Result<bool, String> {
        match (self, bundle_has_tracker) {
            (TrackerMode::Auto, has) => Ok(has),
            (TrackerMode::Overlap, _) => Ok(false),
            (TrackerMode::Sam3, true) => Ok(true),
            (TrackerMode::Sam3, false) => Err(
                "tracker=sam3 needs a bundle with SAM 3's video tracker engines ([tracker] in \
                 bundle.toml); export one with `engines/export_sam3.py --tracker` from a sam3_video \
                 checkpoint, or set tracker=overlap"
                    .into(),
            ),
        }
    }
}

/// Where the real SAM 3 bundle is installed, in the order searched: the user's
/// data directory (`$XDG_DATA_HOME`, else `~/.local/share`), the data
/// directory of the installation this plugin belongs to when that is neither
/// of the next two (`make install PREFIX=/opt/x`: `/opt/x/share`), then
/// `/usr/local/share`, then `/usr/share`, each followed by `samclipseg/sam3`.
pub fn bundle_search_path() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    let user_data = std::env::var_os("XDG_DATA_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|d| !d.is_empty())
                .map(|h| PathBuf::from(h).join(".local/share"))
        });
    dirs.extend(user_data);
    let system = [
        PathBuf::from("/usr/local/share"),
        PathBuf::from("/usr/share"),
    ];
    let installed = samclipseg::installed::layout()
        .and_then(|l| l.prefix.as_ref())
        .map(|p| p.join("share"))
        .filter(|d| !system.contains(d));
    dirs.extend(installed);
    dirs.extend(system);
    dirs.into_iter()
        .map(|d| d.join("samclipseg").join("sam3"))
        .collect()
}

/// The toy shapes-world bundle installed with this plugin (`make install`,
/// the Debian package: `PREFIX/share/samclipseg/toy-shapes-sam3`), when the
/// plugin runs from an installation that has it.
pub fn installed_toy_bundle() -> Option<PathBuf> {
    samclipseg::installed::layout()?
        .toy_bundle()
        .filter(|d| d.join("bundle.toml").is_file())
}

/// The default of property `bundle`: the first search-path entry holding a
/// `bundle.toml`; else the installed toy bundle, so that an installed plugin
/// runs out of the box (on shapes only); else `/usr/share/samclipseg/sam3`
/// (the system location, so that the error for a missing bundle names where
/// it is expected).
pub fn default_bundle_path() -> String {
    let search = bundle_search_path();
    search
        .iter()
        .find(|d| d.join("bundle.toml").is_file())
        .cloned()
        .or_else(installed_toy_bundle)
        .or(search.last().cloned())
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Read once, by `start()`; refused while the element runs.
#[derive(Debug, Clone, Default)]
pub struct StartSettings {
    pub bundle: String,
    /// The backend properties, already in the core's terms.
    pub backend: BackendOptions,
    pub output_mode: OutputMode,
    pub asynchronous: bool,
    pub tracker: TrackerMode,
    /// SAM 3's tracker: most objects followed at once; 0 = the bundle's.
    pub max_objects: u32,
}

/// Changeable while playing; a frame sees them through [`FrameSetup`].
#[derive(Debug, Clone, Default)]
pub struct FrameProps {
    pub prompt: String,
    pub negative_prompt: String,
    pub threshold: Threshold,
    pub smoothness: u32,
    pub max_instances: u32,
    pub negative_overlap: f32,
    pub post_messages: bool,
    /// What the core's stream layer reads per frame.
    pub stream: FrameSettings,
    /// Suggestion vocabulary file; empty = the built-in list.
    pub vocabulary: String,
}

/// Every property value. `Default` holds placeholders only: an element
/// starts from its property specs' defaults (`properties::initial`), the one
/// place a default is written.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub start: StartSettings,
    pub frame: FrameProps,
}

/// What a buffer uses, built when a per-frame property changes (and at
/// start), so that a buffer takes one `Arc` and parses nothing.
#[derive(Debug)]
pub struct FrameSetup {
    /// The parsed prompt with its thresholds resolved against the bundle.
    pub request: Request,
    pub stream: FrameSettings,
    /// The prompt as the metadata and messages name it.
    pub label: String,
    pub post_messages: bool,
    pub output_mode: OutputMode,
}

impl FrameSetup {
    pub fn new(settings: &Settings, manifest: &Manifest) -> Arc<FrameSetup> {
        let f = &settings.frame;
        let options = PostprocessOptions {
            threshold: f.threshold.resolve(manifest),
            mask_threshold: manifest.decoder.mask_threshold,
            smoothness: f.smoothness,
            max_instances: f.max_instances as usize,
        };
        let label = f.prompt.trim().to_owned();
        Arc::new(FrameSetup {
            request: Request::new(&label, &f.negative_prompt, options, f.negative_overlap),
            stream: f.stream.clone(),
            label,
            post_messages: f.post_messages,
            output_mode: settings.start.output_mode,
        })
    }
}
