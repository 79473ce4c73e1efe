//! The engines on an inference server that speaks KServe v2 over gRPC
//! (Triton Inference Server), from a repository that `engines/triton_repo.py`
//! wrote for the bundle.
//!
//! Two models are called: `<prefix>-text_encoder` once per new prompt (its
//! features are cached here, as locally), and the ensemble `<prefix>-segment`
//! once per fresh frame: 8-bit pixels and the prompts' text features go up;
//! the image encoder, decoder and a selection run on the server; what comes
//! down is the per-query scores and boxes and, as float16 logits, only the
//! masks of the queries above the score threshold. Image features never
//! leave the server, so a new prompt on a still picture sends the picture
//! again (the pixels are kept here; the server encodes them again).

mod client;
mod contract;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use client::Client;
pub use client::{INTERNAL_LIMIT, MAX_MESSAGE_BYTES};

/// Prompts per text-encoder request: `engines/triton_repo.py`'s default
/// `max_batch_size`.
pub const TEXT_BATCH: usize = 16;
pub use contract::{ModelContract, SEGMENT, TEXT_ENCODER, contracts};

use crate::error::{Error, Result};
use crate::model::bundle::Manifest;
use crate::model::tensor::TensorF32;

#[allow(clippy::all, missing_docs)]
pub mod proto {
    tonic::include_proto!("inference");
}

/// `grpc://host:port` (false) or `grpcs://host:port` (true), and the
/// `host:port`; the element's `server` property refuses what this refuses.
pub fn parse_server(server: &str) -> std::result::Result<(bool, &str), String> {
    let Some((scheme, rest)) = server.split_once("://") else {
        return Err(
            "the server address needs a scheme: grpc://host:port or grpcs://host:port".into(),
        );
    };
    let tls = match scheme {
        "grpc" => false,
        "grpcs" => true,
        other => {
            return Err(format!(
                "unknown scheme `{other}`: use grpc://host:port (plain) or grpcs://host:port (TLS)"
            ));
        }
    };
    match rest.rsplit_once(':') {
        Some((host, port))
            if !host.is_empty() && !rest.contains('/') && port.parse::<u16>().is_ok() =>
        {
            Ok((tls, rest))
        }
        _ => Err(format!(
            "expected host:port after {scheme}://, found `{rest}`"
        )),
    }
}

/// Where the server is and how to talk to it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RemoteOptions {
    /// `grpc://host:port` or `grpcs://host:port` (TLS).
    pub server: String,
    /// Deadline of one inference request.
    pub timeout: Duration,
    /// How long the start-up checks wait for the server.
    pub connect_timeout: Duration,
    /// Sent as the `authorization` header (a server behind an ingress).
    pub authorization: Option<String>,
    /// Model names are `<prefix>-text_encoder` and `<prefix>-segment`; None =
    /// the bundle's name, as `triton_repo.py` names them.
    pub model_prefix: Option<String>,
    /// `grpcs://` only: a PEM file of the certificate authority to trust
    /// besides the system's (a self-signed server).
    pub ca_file: Option<PathBuf>,
}

impl Default for RemoteOptions {
    fn default() -> Self {
        RemoteOptions {
            server: String::new(),
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            authorization: None,
            model_prefix: None,
            ca_file: None,
        }
    }
}

/// The authorization header is a secret: logs show that one is set, not it.
impl std::fmt::Debug for RemoteOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteOptions")
            .field("server", &self.server)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field(
                "authorization",
                &self.authorization.as_ref().map(|_| "(set)"),
            )
            .field("model_prefix", &self.model_prefix)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

impl RemoteOptions {
    pub(crate) fn error(&self, message: impl std::fmt::Display) -> Error {
        Error::Backend {
            backend: format!("remote ({})", self.server),
            message: message.to_string(),
        }
    }
}

/// What the segment ensemble returned for one picture and a batch of prompts.
#[derive(Debug, Clone)]
pub struct Segmented {
    pub pred_logits: TensorF32,
    pub pred_boxes: TensorF32,
    pub presence_logits: TensorF32,
    /// (prompt, query) of each mask in `kept_masks`.
    pub kept_index: Vec<(usize, usize)>,
    /// The kept queries' mask logits, [K, H, W], widened from float16.
    pub kept_masks: TensorF32,
}

/// The two models of one bundle on one server, checked against the bundle.
pub struct RemoteEngines {
    client: Client,
    text: ModelContract,
    segment: ModelContract,
}

impl RemoteEngines {
    /// Connects, checks the server's liveness and readiness and each model's
    /// metadata against `manifest`; every mismatch is refused here, naming
    /// the model and tensor.
    pub fn connect(manifest: &Manifest, options: &RemoteOptions) -> Result<RemoteEngines> {
        if options.server.trim().is_empty() {
            return Err(options.error(
                "backend=remote needs the address of the server: set `server` to grpc://host:port or grpcs://host:port",
            ));
        }
        let client = Client::new(options)?;
        let wait = options.connect_timeout;
        client.check_live(wait)?;
        let prefix = options
            .model_prefix
            .clone()
            .unwrap_or_else(|| manifest.bundle.name.clone());
        let [text, segment] = contracts(manifest, &prefix);
        for model in [&text, &segment] {
            if !client.model_ready(&model.name, wait)? {
                return Err(options.error(format!(
                    "model `{}` is not ready on the server: it is still loading, failed to load, or the repository has no such model; \
                     write the repository for this bundle with `engines/triton_repo.py {} REPO` (model prefix `{prefix}`)",
                    model.name,
                    manifest.bundle.name
                )));
            }
            let metadata = client.metadata(&model.name, wait)?;
            model.check(&metadata).map_err(|m| options.error(m))?;
        }
        client.mark_started();
        log::info!(
            "bundle {}: engines on {} (models {}, {})",
            manifest.bundle.name,
            options.server,
            text.name,
            segment.name
        );
        Ok(RemoteEngines {
            client,
            text,
            segment,
        })
    }

    pub fn options(&self) -> &RemoteOptions {
        self.client.options()
    }

    /// Protobuf bytes sent and received since connecting.
    pub fn wire_bytes(&self) -> (u64, u64) {
        self.client.wire_bytes()
    }

    /// The names of the text encoder and segment models.
    pub fn model_names(&self) -> [&str; 2] {
        [&self.text.name, &self.segment.name]
    }

    /// Server statistics of `model`: (inference count, execution count);
    /// fewer executions than inferences means requests were batched.
    pub fn statistics(&self, model: &str) -> Result<(u64, u64)> {
        let stats = self.client.statistics(model)?;
        Ok(stats.model_stats.iter().fold((0, 0), |(i, e), s| {
            (i + s.inference_count, e + s.execution_count)
        }))
    }

    /// One inference on `model`, within the request timeout all told: after
    /// an outage the models' metadata is checked again first (a synchronous
    /// frame still waits at most `request-timeout`).
    fn infer(
        &self,
        model: &ModelContract,
        inputs: Vec<(&str, &str, Vec<i64>, Vec<u8>)>,
        outputs: &[&str],
    ) -> Result<client::Outputs> {
        let deadline = Instant::now() + self.options().timeout;
        self.check_again(deadline)?;
        self.client
            .infer(&model.name, inputs, outputs, left(deadline))
    }

    /// After an outage, before the next inference: both models' metadata
    /// against the bundle again. The server may have come back with another
    /// repository under the same names (another bundle deployed, a model
    /// replaced while it was unloaded); that is refused naming the tensor,
    /// as at start. An outage answer keeps the outage.
    fn check_again(&self, deadline: Instant) -> Result<()> {
        let Some(outages) = self.client.needs_check() else {
            return Ok(());
        };
        for model in [&self.text, &self.segment] {
            let metadata = self.client.metadata(&model.name, left(deadline))?;
            model.check(&metadata).map_err(|m| {
                self.options()
                    .error(format!("after the server came back: {m}"))
            })?;
        }
        self.client.checked(outages);
        Ok(())
    }

    /// Text features [n, context, D] of tokenised prompts ([n, context] each),
    /// in requests of at most [`TEXT_BATCH`] prompts (the repository's
    /// `max_batch_size`).
    pub fn text_features(&self, ids: &[i64], mask: &[i64], n: usize) -> Result<TensorF32> {
        let ctx = (ids.len() / n.max(1)).max(1);
        let mut parts = Vec::new();
        for (ids, mask) in ids
            .chunks(TEXT_BATCH * ctx)
            .zip(mask.chunks(TEXT_BATCH * ctx))
        {
            let rows = ids.len() / ctx;
            let shape = vec![rows as i64, ctx as i64];
            let out = self.infer(
                &self.text,
                vec![
                    ("input_ids", "INT64", shape.clone(), le_bytes_i64(ids)),
                    ("attention_mask", "INT64", shape, le_bytes_i64(mask)),
                ],
                &["text_features"],
            )?;
            let (t, raw) = &out.tensors[0];
            let part = self.text.tensor_f32(t, raw)?;
            self.expect_rows(&self.text, "text_features", &part.shape, rows, Some(ctx))?;
            parts.push(part);
        }
        let refs: Vec<&TensorF32> = parts.iter().collect();
        TensorF32::concat(&refs).ok_or_else(|| {
            self.options().error(format!(
                "model `{}` returned no text features",
                self.text.name
            ))
        })
    }

    /// An output's leading dimension is the request's `rows` (and its second
    /// `second`): anything else would index past what was sent.
    fn expect_rows(
        &self,
        model: &ModelContract,
        name: &str,
        shape: &[usize],
        rows: usize,
        second: Option<usize>,
    ) -> Result<()> {
        if shape.first() == Some(&rows) && second.is_none_or(|s| shape.get(1) == Some(&s)) {
            return Ok(());
        }
        Err(self.options().error(format!(
            "model `{}` output `{name}` has shape {shape:?} for a request of {rows}",
            model.name
        )))
    }

    /// One picture (planar RGB8, [3, S, S]) against `n` prompts.
    pub fn segment(
        &self,
        pixels: &[u8],
        size: usize,
        text_features: &TensorF32,
        attention_mask: &[i64],
        score_threshold: f32,
    ) -> Result<Segmented> {
        let n = text_features.shape[0] as i64;
        let ctx = text_features.shape[1] as i64;
        let text_shape: Vec<i64> = text_features.shape.iter().map(|d| *d as i64).collect();
        let out = self.infer(
            &self.segment,
            vec![
                (
                    "pixels",
                    "UINT8",
                    vec![1, 3, size as i64, size as i64],
                    pixels.to_vec(),
                ),
                (
                    "text_features",
                    "FP32",
                    text_shape,
                    le_bytes_f32(&text_features.data),
                ),
                (
                    "attention_mask",
                    "INT64",
                    vec![n, ctx],
                    le_bytes_i64(attention_mask),
                ),
                (
                    "score_threshold",
                    "FP32",
                    vec![1],
                    score_threshold.to_le_bytes().to_vec(),
                ),
            ],
            &contract::SEGMENT_OUTPUTS,
        )?;
        let c = &self.segment;
        let t = |i: usize| c.tensor_f32(&out.tensors[i].0, &out.tensors[i].1);
        let (pred_logits, pred_boxes, presence_logits) = (t(0)?, t(1)?, t(2)?);
        let n = n as usize;
        let queries = pred_logits.shape.get(1).copied().unwrap_or(0);
        self.expect_rows(c, "pred_logits", &pred_logits.shape, n, None)?;
        self.expect_rows(c, "pred_boxes", &pred_boxes.shape, n, Some(queries))?;
        self.expect_rows(c, "presence_logits", &presence_logits.shape, n, Some(1))?;
        let index = c.tensor_i64(&out.tensors[3].0, &out.tensors[3].1)?;
        let kept_masks = c.tensor_f32(&out.tensors[4].0, &out.tensors[4].1)?;
        let kept_index: Vec<(usize, usize)> =
            index
                .data
                .chunks_exact(2)
                .map(|pq| {
                    match (usize::try_from(pq[0]), usize::try_from(pq[1])) {
                (Ok(p), Ok(q)) if p < n && q < queries => Ok((p, q)),
                _ => Err(self.options().error(format!(
                    "model `{}` returned kept_index ({}, {}) for {n} prompts of {queries} queries",
                    c.name, pq[0], pq[1]
                ))),
            }
                })
                .collect::<Result<_>>()?;
        if kept_masks.shape.first() != Some(&kept_index.len()) {
            return Err(self.options().error(format!(
                "model `{}` returned {} kept indices and kept_masks of shape {:?}",
                c.name,
                kept_index.len(),
                kept_masks.shape
            )));
        }
        Ok(Segmented {
            pred_logits,
            pred_boxes,
            presence_logits,
            kept_index,
            kept_masks,
        })
    }
}

/// What is left until `deadline`; at least 1 ms, so that a call past it
/// fails as a deadline (an outage) rather than with a zero timeout.
fn left(deadline: Instant) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1))
}

fn le_bytes_i64(v: &[i64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn le_bytes_f32(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}
