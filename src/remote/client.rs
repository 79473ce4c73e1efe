//! A blocking KServe v2 gRPC client: one tokio runtime and one HTTP/2 channel
//! per model, shared by every stream that uses it. A failed call puts the
//! server on a back-off, during which calls fail at once without touching the
//! network, so that frames keep flowing while the server is away.
//!
//! Which answers are an outage (`Error::Unavailable`: frames pass as
//! `pending`, retried after the back-off) and which end the stream
//! (`Error::Backend`) is decided in [`Client::status_error`]; the rule, as in
//! docs/remote.md:
//!
//! - Always an outage: no connection, a cut connection (`Unknown`,
//!   `Cancelled`), a deadline passed, `Unavailable` (also Triton's "server is
//!   stopping") and `ResourceExhausted` (a full queue).
//! - After the start succeeded, a model that is missing or not ready is an
//!   outage too: `NotFound`, `FailedPrecondition`, or a message saying "not
//!   ready", "no available versions" or "unknown model". Triton answers so
//!   while it drains after a SIGTERM (it unloads its models first and keeps
//!   answering for up to its exit timeout), while a model is unloaded and
//!   loaded again (`--model-control-mode=explicit` or `poll`), and from a
//!   replica that is still loading. Before the first success (at start) the
//!   same answers are a start error naming the model: nothing ever worked,
//!   so the repository is the likelier culprit than a restart.
//! - `Internal` is what Triton answers when one execution failed: an
//!   exception in a python-backend `execute` (wrapped as "in ensemble ...,
//!   Failed to process the request(s) ..."), an ONNX Runtime or TensorRT
//!   failure such as a CUDA out-of-memory, a crashed python stub that Triton
//!   restarts. Some pass (memory freed by another model, the stub back), some
//!   never do (a bug in the model): an outage for up to
//!   [`INTERNAL_LIMIT`] answers in a row (counted once per back-off, so at
//!   least 3.75 s), then the stream ends with the server's message. Any
//!   successful inference starts the count again.
//! - Everything else ends the stream: `InvalidArgument` (a request the model
//!   refuses: shapes, datatypes), `Unauthenticated`, `PermissionDenied`,
//!   `Unimplemented`, ...
//!
//! After any outage the models' metadata is checked again before the next
//! inference ([`Client::needs_check`]): a model that comes back with another
//! signature is refused naming the tensor, as at start.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prost::Message;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use super::RemoteOptions;
use super::proto;
use super::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use crate::error::{Error, Result};

/// Raised deliberately from tonic's 4 MB default: a full-size fresh frame
/// sends about 3.1 MB, and the answer grows by 166 KB per kept mask, up to
/// 16 phrases x 200 queries = 531 MB at a threshold of 0.
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024 * 1024;
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(4);
/// `Internal` answers in a row (one per back-off) that pass as an outage;
/// the next one ends the stream. With the back-off of 250 ms doubling, the
/// fifth comes at least 3.75 s after the first: long enough for a transient
/// failure (an out-of-memory under a burst, a python stub restarting) to
/// pass, short enough that a model that always fails is an error soon.
pub const INTERNAL_LIMIT: u32 = 5;
/// How often a call waiting on the server looks at its job's cancel switch.
const CANCEL_POLL: Duration = Duration::from_millis(20);

#[derive(Debug, Default)]
struct Health {
    /// Set while the server is away: when the back-off began, how long it
    /// lasts, and what the server's last failure said. Cleared only by a
    /// successful inference: a server that answers its metadata but fails
    /// every inference is not back, and its back-off keeps growing.
    down: Option<(Instant, Duration, String)>,
    /// `Internal` answers since the last successful inference, one per
    /// back-off period (streams failing together count once).
    internal: u32,
    /// Counts the outages; the models' metadata was last checked when it
    /// was `checked`.
    outages: u64,
    checked: u64,
}

/// What one answer of the server means for the stream (see the module's doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// The server or its connection is away.
    Outage,
    /// The model is missing or not ready (after the start only).
    ModelMissing,
    /// One execution failed on the server (after the start only).
    Internal,
    /// The stream ends.
    Failure,
}

impl Answer {
    fn of(status: &tonic::Status, started: bool) -> Answer {
        use tonic::Code;
        match status.code() {
            // Unknown: what tonic reports for a connection cut mid-call.
            // ResourceExhausted: the server's queue is full (overload passes).
            Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::Unknown
            | Code::ResourceExhausted => Answer::Outage,
            _ if !started => Answer::Failure,
            Code::NotFound | Code::FailedPrecondition => Answer::ModelMissing,
            _ if model_missing(status.message()) => Answer::ModelMissing,
            Code::Internal => Answer::Internal,
            _ => Answer::Failure,
        }
    }
}

/// Triton's words for a model it has not (yet, or any more) loaded, whatever
/// the code: "Request for unknown model: 'x' has no available versions",
/// "... is not ready", "Server not ready".
fn model_missing(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    ["not ready", "no available versions", "unknown model"]
        .iter()
        .any(|w| m.contains(w))
}

/// The server's message without a python traceback ("\n\nAt:\n  model.py(37)
/// ..."): its first paragraph, on one line.
fn first_paragraph(message: &str) -> String {
    let first = message.trim().split("\n\n").next().unwrap_or_default();
    first.split_whitespace().collect::<Vec<_>>().join(" ")
}

pub struct Client {
    runtime: tokio::runtime::Runtime,
    channel: Channel,
    options: RemoteOptions,
    health: Mutex<Health>,
    /// Set once [`super::RemoteEngines::connect`] succeeded: from then on a
    /// missing model is an outage, not a start error.
    started: AtomicBool,
    sent: AtomicU64,
    received: AtomicU64,
}

/// What one inference call returns: the outputs by name, in the order asked.
pub struct Outputs {
    pub tensors: Vec<(proto::model_infer_response::InferOutputTensor, Vec<u8>)>,
}

impl Client {
    /// Parses the address and builds the channel; nothing is sent yet.
    pub fn new(options: &RemoteOptions) -> Result<Client> {
        let (tls, rest) = super::parse_server(&options.server).map_err(|e| options.error(e))?;
        if !tls && options.authorization.is_some() {
            log::warn!(
                "{}: the authorization header goes over plain grpc://; use grpcs:// to keep it private",
                options.server
            );
        }
        if !tls && options.ca_file.is_some() {
            log::warn!("{}: ca-file is ignored without grpcs://", options.server);
        }
        let url = format!("{}://{rest}", if tls { "https" } else { "http" });
        let mut endpoint = Endpoint::from_shared(url)
            .map_err(|e| options.error(format!("not a valid address: {e}")))?
            .connect_timeout(options.connect_timeout)
            // No HTTP/2 keep-alive pings: gRPC servers allow one per 5 min by
            // default and answer more with GOAWAY "too many pings" during a
            // long request; a dead server is found by the request deadline.
            .tcp_nodelay(true);
        if tls {
            let mut config = ClientTlsConfig::new().with_native_roots();
            if let Some(path) = &options.ca_file {
                let pem = std::fs::read(path).map_err(|e| {
                    options.error(format!(
                        "cannot read the CA certificate {}: {e}",
                        path.display()
                    ))
                })?;
                config = config.ca_certificate(Certificate::from_pem(pem));
            }
            endpoint = endpoint
                .tls_config(config)
                .map_err(|e| options.error(format!("TLS set-up failed: {e}")))?;
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("samclipseg-remote")
            .enable_all()
            .build()
            .map_err(|e| options.error(format!("cannot start the network thread: {e}")))?;
        // Lazy: the first call connects, and a lost connection is made again
        // by the channel itself on the next call.
        let channel = {
            let _guard = runtime.enter();
            endpoint.connect_lazy()
        };
        Ok(Client {
            runtime,
            channel,
            options: options.clone(),
            health: Mutex::new(Health::default()),
            started: AtomicBool::new(false),
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
        })
    }

    pub fn options(&self) -> &RemoteOptions {
        &self.options
    }

    /// The start-up checks passed: missing models are an outage from now on.
    pub fn mark_started(&self) {
        self.started.store(true, Ordering::Release);
    }

    /// Whether an outage happened since the models' metadata was last
    /// checked, and the outage count to hand to [`Client::checked`].
    pub fn needs_check(&self) -> Option<u64> {
        let health = self.lock_health();
        (health.outages != health.checked).then_some(health.outages)
    }

    /// The metadata was checked after outage number `outages`.
    pub fn checked(&self, outages: u64) {
        let mut health = self.lock_health();
        health.checked = health.checked.max(outages);
    }

    /// Bytes of request and response messages since the client was made.
    pub fn wire_bytes(&self) -> (u64, u64) {
        (
            self.sent.load(Ordering::Relaxed),
            self.received.load(Ordering::Relaxed),
        )
    }

    fn stub(&self) -> GrpcInferenceServiceClient<Channel> {
        GrpcInferenceServiceClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    fn request<T>(&self, message: T, timeout: Duration) -> Result<tonic::Request<T>> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(timeout);
        if let Some(value) = &self.options.authorization {
            let value = value.parse().map_err(|_| {
                self.options
                    .error("the authorization header has characters HTTP headers cannot carry")
            })?;
            request.metadata_mut().insert("authorization", value);
        }
        Ok(request)
    }

    /// Runs one call to completion on the network thread, obeying the
    /// calling job's cancel switch and the server's back-off.
    fn call<T, F, Fut>(&self, what: &str, timeout: Duration, f: F) -> Result<T>
    where
        F: FnOnce(GrpcInferenceServiceClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        if let Some((since, wait, last)) = &self.lock_health().down
            && since.elapsed() < *wait
        {
            return Err(self.unavailable(what, format!("retrying after a back-off ({last})")));
        }
        let control = crate::stream::run_control::current();
        // The deadline is also enforced here: `grpc-timeout` only asks the
        // server, and a host that never answers would not end the call.
        let call = f(self.stub());
        let started = Instant::now();
        let outcome = self.runtime.block_on(async {
            let future = tokio::time::timeout(timeout, call);
            let cancelled = async {
                loop {
                    tokio::time::sleep(CANCEL_POLL).await;
                    if control.as_ref().is_some_and(|c| c.is_cancelled()) {
                        return;
                    }
                }
            };
            tokio::select! {
                r = future => Some(r),
                _ = cancelled => None,
            }
        });
        match outcome {
            None => Err(Error::Cancelled),
            Some(Ok(Ok(response))) => Ok(response.into_inner()),
            // tonic enforces `grpc-timeout` itself too, and its expiry comes
            // back as `Cancelled: Timeout expired`, racing the timer above.
            Some(Ok(Err(status))) if started.elapsed() >= timeout => Err(self.status_error(
                what,
                timeout,
                tonic::Status::deadline_exceeded(status.message()),
            )),
            Some(Ok(Err(status))) => Err(self.status_error(what, timeout, status)),
            Some(Err(_elapsed)) => Err(self.status_error(
                what,
                timeout,
                tonic::Status::deadline_exceeded("the client's deadline passed"),
            )),
        }
    }

    fn lock_health(&self) -> std::sync::MutexGuard<'_, Health> {
        crate::sync::lock(&self.health)
    }

    fn unavailable(&self, what: &str, message: impl std::fmt::Display) -> Error {
        Error::Unavailable {
            server: self.options.server.clone(),
            message: format!("{what}: {message}"),
        }
    }

    /// An answer other than success: an outage (`Error::Unavailable`, the
    /// server put on a back-off) or a failure that ends the stream, by the
    /// rule in the module's doc.
    fn status_error(&self, what: &str, timeout: Duration, status: tonic::Status) -> Error {
        let started = self.started.load(Ordering::Acquire);
        let answer = Answer::of(&status, started);
        let said = format!(
            "the server answered {:?}: {}",
            status.code(),
            first_paragraph(status.message())
        );
        if answer == Answer::Failure {
            return self.options.error(format!("{what}: {said}"));
        }
        let mut health = self.lock_health();
        // Streams failing together count as one failure: the wait doubles
        // (and an `Internal` answer counts) only once the previous one has
        // passed.
        let (wait, new_period) = match &health.down {
            Some((since, wait, _)) if since.elapsed() < *wait => (*wait, false),
            Some((_, wait, _)) => ((*wait * 2).min(MAX_BACKOFF), true),
            None => (FIRST_BACKOFF, true),
        };
        let message = match answer {
            // After the start a call may have had only what was left of the
            // request timeout (a check of the metadata went first): the
            // timeout named is the element's setting.
            Answer::Outage if status.code() == tonic::Code::DeadlineExceeded => format!(
                "no answer within the request timeout of {} ms",
                if started {
                    self.options.timeout
                } else {
                    timeout
                }
                .as_millis()
            ),
            Answer::Outage => status.message().to_string(),
            Answer::ModelMissing => said,
            Answer::Internal => {
                if new_period {
                    health.internal += 1;
                }
                if health.internal >= INTERNAL_LIMIT {
                    let n = health.internal;
                    health.internal = 0;
                    return self.options.error(format!(
                        "{what}: {said} ({n} answers in a row with no success between: not a passing failure)"
                    ));
                }
                format!(
                    "{said} (answer {} of {INTERNAL_LIMIT} before the stream ends)",
                    health.internal
                )
            }
            Answer::Failure => unreachable!(),
        };
        health.down = Some((Instant::now(), wait, message.clone()));
        health.outages += 1;
        self.unavailable(what, message)
    }

    /// Liveness, within `timeout` (the start-up check). The server's own
    /// readiness is not asked: under `--strict-readiness` it is false while
    /// any of its models loads, and a server shared with other models would
    /// refuse our start although our two are ready; `RemoteEngines::connect`
    /// asks for those two instead.
    pub fn check_live(&self, timeout: Duration) -> Result<()> {
        let request = self.request(proto::ServerLiveRequest {}, timeout)?;
        let live = self.call("server liveness", timeout, |mut c| async move {
            c.server_live(request).await
        });
        let live = live.map_err(|e| match e {
            Error::Unavailable { message, .. } => self.options.error(format!(
                "the server did not answer within {} ms ({message}); check that it runs and the address",
                timeout.as_millis()
            )),
            other => other,
        })?;
        if !live.live {
            return Err(self.options.error("the server says it is not live"));
        }
        Ok(())
    }

    pub fn model_ready(&self, model: &str, timeout: Duration) -> Result<bool> {
        let request = self.request(
            proto::ModelReadyRequest {
                name: model.to_string(),
                version: String::new(),
            },
            timeout,
        )?;
        let what = format!("model `{model}` readiness");
        let r = self.call(&what, timeout, |mut c| async move {
            c.model_ready(request).await
        });
        match r {
            Ok(r) => Ok(r.ready),
            // Triton answers "unknown model" for a model it does not have.
            Err(Error::Backend { message, .. }) if message.contains("NotFound") => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub fn metadata(&self, model: &str, timeout: Duration) -> Result<proto::ModelMetadataResponse> {
        let request = self.request(
            proto::ModelMetadataRequest {
                name: model.to_string(),
                version: String::new(),
            },
            timeout,
        )?;
        let what = format!("model `{model}` metadata");
        self.call(&what, timeout, |mut c| async move {
            c.model_metadata(request).await
        })
    }

    pub fn statistics(&self, model: &str) -> Result<proto::ModelStatisticsResponse> {
        let timeout = self.options.timeout;
        let request = self.request(
            proto::ModelStatisticsRequest {
                name: model.to_string(),
                version: String::new(),
            },
            timeout,
        )?;
        self.call("model statistics", timeout, |mut c| async move {
            c.model_statistics(request).await
        })
    }

    /// One inference within `timeout`: `inputs` as (name, datatype, shape,
    /// raw little-endian bytes), the `outputs` asked for by name, checked to
    /// be all there. Its success ends an outage.
    pub fn infer(
        &self,
        model: &str,
        inputs: Vec<(&str, &str, Vec<i64>, Vec<u8>)>,
        outputs: &[&str],
        timeout: Duration,
    ) -> Result<Outputs> {
        let mut request = proto::ModelInferRequest {
            model_name: model.to_string(),
            ..Default::default()
        };
        for (name, datatype, shape, raw) in inputs {
            request
                .inputs
                .push(proto::model_infer_request::InferInputTensor {
                    name: name.to_string(),
                    datatype: datatype.to_string(),
                    shape,
                    ..Default::default()
                });
            request.raw_input_contents.push(raw);
        }
        for name in outputs {
            request
                .outputs
                .push(proto::model_infer_request::InferRequestedOutputTensor {
                    name: name.to_string(),
                    ..Default::default()
                });
        }
        let sent = request.encoded_len() as u64;
        let what = format!("model `{model}`");
        let request = self.request(request, timeout)?;
        let response = self.call(&what, timeout, |mut c| async move {
            c.model_infer(request).await
        })?;
        {
            let mut health = self.lock_health();
            health.down = None;
            health.internal = 0;
        }
        self.sent.fetch_add(sent, Ordering::Relaxed);
        self.received
            .fetch_add(response.encoded_len() as u64, Ordering::Relaxed);
        let proto::ModelInferResponse {
            outputs: described,
            raw_output_contents: raw,
            ..
        } = response;
        if raw.len() != described.len() {
            return Err(self.options.error(format!(
                "model `{model}` answered {} outputs with {} binary contents; the server must send outputs as raw binary",
                described.len(),
                raw.len()
            )));
        }
        let mut by_name: Vec<_> = described.into_iter().zip(raw).collect();
        let mut tensors = Vec::with_capacity(outputs.len());
        for name in outputs {
            let i = by_name
                .iter()
                .position(|(t, _)| t.name == *name)
                .ok_or_else(|| {
                    self.options
                        .error(format!("model `{model}` did not return output `{name}`"))
                })?;
            tensors.push(by_name.swap_remove(i));
        }
        Ok(Outputs { tensors })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::{Code, Status};

    #[test]
    fn answers_are_sorted_by_the_documented_rule() {
        let missing = "Request for unknown model: 'tiny-sam3-segment' has no available versions";
        let cases = [
            // (code, message, at start, while playing)
            (
                Code::Unavailable,
                "Server is stopping",
                Answer::Outage,
                Answer::Outage,
            ),
            (
                Code::Unknown,
                "connection reset",
                Answer::Outage,
                Answer::Outage,
            ),
            (
                Code::ResourceExhausted,
                "queue full",
                Answer::Outage,
                Answer::Outage,
            ),
            (Code::DeadlineExceeded, "", Answer::Outage, Answer::Outage),
            (
                Code::NotFound,
                missing,
                Answer::Failure,
                Answer::ModelMissing,
            ),
            (
                Code::FailedPrecondition,
                "loading",
                Answer::Failure,
                Answer::ModelMissing,
            ),
            (
                Code::InvalidArgument,
                "model 'x' is not ready",
                Answer::Failure,
                Answer::ModelMissing,
            ),
            (
                Code::Internal,
                "RuntimeError: CUDA out of memory",
                Answer::Failure,
                Answer::Internal,
            ),
            (
                Code::InvalidArgument,
                "unexpected shape for input 'pixels'",
                Answer::Failure,
                Answer::Failure,
            ),
            (
                Code::Unauthenticated,
                "no token",
                Answer::Failure,
                Answer::Failure,
            ),
            (Code::Unimplemented, "", Answer::Failure, Answer::Failure),
        ];
        for (code, message, start, playing) in cases {
            let status = Status::new(code, message);
            assert_eq!(
                Answer::of(&status, false),
                start,
                "{code:?} {message} at start"
            );
            assert_eq!(
                Answer::of(&status, true),
                playing,
                "{code:?} {message} playing"
            );
        }
    }

    #[test]
    fn a_python_traceback_is_left_out_of_the_message() {
        let m = "Failed to process the request(s) for model 'x_0_0', message: RuntimeError: boom\n\nAt:\n  /repo/x/1/model.py(37): execute\n";
        assert_eq!(
            first_paragraph(m),
            "Failed to process the request(s) for model 'x_0_0', message: RuntimeError: boom"
        );
    }
}
