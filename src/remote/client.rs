//! A blocking KServe v2 gRPC client: one tokio runtime and one HTTP/2 channel
//! per model, shared by every stream that uses it. A failed call puts the
//! server on a back-off, during which calls fail at once without touching the
//! network, so that frames keep flowing while the server is away.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
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
/// How often a call waiting on the server looks at its job's cancel switch.
const CANCEL_POLL: Duration = Duration::from_millis(20);

#[derive(Debug, Default)]
struct Health {
    /// Set while the server is away: when the back-off began, how long it
    /// lasts, and what the server's last failure said.
    down: Option<(Instant, Duration, String)>,
}

pub struct Client {
    runtime: tokio::runtime::Runtime,
    channel: Channel,
    options: RemoteOptions,
    health: Mutex<Health>,
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
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
        })
    }

    pub fn options(&self) -> &RemoteOptions {
        &self.options
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
            Some(Ok(Ok(response))) => {
                self.lock_health().down = None;
                Ok(response.into_inner())
            }
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

    /// Transport failures and deadlines are an outage (retried after a
    /// back-off); what the server refuses is a failure of its own.
    fn status_error(&self, what: &str, timeout: Duration, status: tonic::Status) -> Error {
        use tonic::Code;
        // Unknown: what tonic reports for a connection cut mid-call.
        // ResourceExhausted: the server's queue is full (overload passes).
        let outage = matches!(
            status.code(),
            Code::Unavailable
                | Code::DeadlineExceeded
                | Code::Cancelled
                | Code::Unknown
                | Code::ResourceExhausted
        );
        if !outage {
            return self.options.error(format!(
                "{what}: the server answered {:?}: {}",
                status.code(),
                status.message()
            ));
        }
        let message = if status.code() == Code::DeadlineExceeded {
            format!(
                "no answer within the request timeout of {} ms",
                timeout.as_millis()
            )
        } else {
            status.message().to_string()
        };
        let mut health = self.lock_health();
        // Streams failing together count as one failure: the wait doubles
        // only once the previous one has passed.
        let wait = match &health.down {
            Some((since, wait, _)) if since.elapsed() < *wait => *wait,
            Some((_, wait, _)) => (*wait * 2).min(MAX_BACKOFF),
            None => FIRST_BACKOFF,
        };
        health.down = Some((Instant::now(), wait, message.clone()));
        self.unavailable(what, message)
    }

    /// Liveness and readiness, within `timeout` (the start-up check).
    pub fn check_ready(&self, timeout: Duration) -> Result<()> {
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
        let request = self.request(proto::ServerReadyRequest {}, timeout)?;
        let ready = self.call("server readiness", timeout, |mut c| async move {
            c.server_ready(request).await
        })?;
        if !ready.ready {
            return Err(self
                .options
                .error("the server is live but not ready: its models are still loading or failed to load; see its log"));
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
        let r = self.call("model readiness", timeout, |mut c| async move {
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
        self.call("model metadata", timeout, |mut c| async move {
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

    /// One inference: `inputs` as (name, datatype, shape, raw little-endian
    /// bytes), the `outputs` asked for by name, checked to be all there.
    pub fn infer(
        &self,
        model: &str,
        inputs: Vec<(&str, &str, Vec<i64>, Vec<u8>)>,
        outputs: &[&str],
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
        let timeout = self.options.timeout;
        let what = format!("model `{model}`");
        let request = self.request(request, timeout)?;
        let response = self.call(&what, timeout, |mut c| async move {
            c.model_infer(request).await
        })?;
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
