//! The HTTP API the page uses (README.md, "samclipseg studio"). Every refusal
//! is a 4xx with `{"error": "..."}` saying what is wrong.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::stream;
use serde::Deserialize;
use serde_json::json;
use tracing::{info, warn};

use crate::live::{self, Live, Update, lock};
use crate::picture::{self, BundleInfo, Refusal, Store};

pub struct AppState {
    pub live: Arc<Live>,
    bundle: PathBuf,
    info: BundleInfo,
    pictures: Mutex<Store>,
    /// One picture at a time: each runs the model on the two cores the live
    /// pipeline also needs.
    picture_turn: tokio::sync::Mutex<()>,
}

impl AppState {
    pub fn new(live: Arc<Live>, bundle: PathBuf, info: BundleInfo) -> AppState {
        AppState {
            live,
            bundle,
            info,
            pictures: Mutex::new(Store::default()),
            picture_turn: tokio::sync::Mutex::new(()),
        }
    }
}

type Shared = State<Arc<AppState>>;

pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    fn bad(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            warn!("{}: {}", self.status, self.message);
        }
        (self.status, axum::Json(json!({"error": self.message}))).into_response()
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> ApiError {
        match r {
            Refusal::TooLarge(m) => ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, m),
            Refusal::Unsupported(m) => ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, m),
            Refusal::Broken(m) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, m),
        }
    }
}

const INDEX: &str = include_str!("page/index.html");
const SCRIPT: &str = include_str!("page/app.js");
const STYLE: &str = include_str!("page/style.css");

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { page(INDEX, "text/html; charset=utf-8") }),
        )
        .route(
            "/app.js",
            get(|| async { page(SCRIPT, "application/javascript; charset=utf-8") }),
        )
        .route(
            "/style.css",
            get(|| async { page(STYLE, "text/css; charset=utf-8") }),
        )
        .route("/live.mjpg", get(mjpeg))
        .route("/api/live/frame.jpg", get(live_frame))
        .route("/api/live", get(live_status).post(live_update))
        .route("/api/suggest", get(suggest))
        .route(
            "/api/image",
            axum::routing::post(post_image)
                // The form around the picture needs a little more than the picture.
                .layer(DefaultBodyLimit::max(picture::MAX_BYTES + 64 * 1024)),
        )
        .route("/api/image/{id}/{file}", get(image_file))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such page or API route") })
        .with_state(state)
}

fn page(body: &'static str, kind: &'static str) -> Response {
    ([(header::CONTENT_TYPE, kind)], body).into_response()
}

async fn live_status(State(s): Shared) -> Response {
    axum::Json(s.live.status()).into_response()
}

async fn live_update(
    State(s): Shared,
    body: Result<axum::Json<Update>, JsonRejection>,
) -> Result<Response, ApiError> {
    let axum::Json(update) =
        body.map_err(|e| ApiError::bad(format!("bad settings: {}", e.body_text())))?;
    let live = s.live.clone();
    tokio::task::spawn_blocking(move || live.update(&update))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(ApiError::bad)?;
    info!("live settings changed: {:?}", s.live.settings());
    Ok(axum::Json(s.live.status()).into_response())
}

async fn live_frame(State(s): Shared) -> Result<Response, ApiError> {
    let frame = s.live.frames().borrow().clone();
    let jpeg =
        frame.ok_or_else(|| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "no frame yet"))?;
    Ok(([(header::CONTENT_TYPE, "image/jpeg")], jpeg).into_response())
}

const BOUNDARY: &str = "samclipsegframe";

/// The preview as MJPEG (multipart/x-mixed-replace): every browser shows it in
/// an <img> with no script, and each part is one whole frame.
async fn mjpeg(State(s): Shared) -> Response {
    let rx = s.live.frames();
    let parts = stream::unfold((rx, true), |(mut rx, first)| async move {
        if !first && rx.changed().await.is_err() {
            return None;
        }
        let mut frame = rx.borrow_and_update().clone();
        while frame.is_none() {
            if rx.changed().await.is_err() {
                return None;
            }
            frame = rx.borrow_and_update().clone();
        }
        let jpeg = frame?;
        let mut part = format!(
            "--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
            jpeg.len()
        )
        .into_bytes();
        part.extend_from_slice(&jpeg);
        part.extend_from_slice(b"\r\n");
        Some((
            Ok::<_, std::convert::Infallible>(Bytes::from(part)),
            (rx, false),
        ))
    });
    (
        [
            (
                header::CONTENT_TYPE,
                format!("multipart/x-mixed-replace; boundary={BOUNDARY}"),
            ),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        Body::from_stream(parts),
    )
        .into_response()
}

#[derive(Deserialize)]
struct SuggestQuery {
    k: Option<u32>,
}

async fn suggest(
    State(s): Shared,
    q: Result<Query<SuggestQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad(format!("bad query: {}", e.body_text())))?;
    let k = q.k.unwrap_or(5);
    if !(1..=50).contains(&k) {
        return Err(ApiError::bad(format!(
            "k={k} is out of range: expected 1 to 50"
        )));
    }
    let live = s.live.clone();
    let phrases = tokio::task::spawn_blocking(move || live.suggest(k))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| ApiError::new(StatusCode::CONFLICT, format!("no suggestions: {e}")))?;
    let phrases: Vec<_> = phrases
        .into_iter()
        .map(|(phrase, score)| json!({"phrase": phrase, "score": score}))
        .collect();
    Ok(axum::Json(json!({ "phrases": phrases })).into_response())
}

/// The fields of a picture request, as read from the form.
struct PictureForm {
    image: Option<Bytes>,
    prompt: Option<String>,
    threshold: Option<String>,
    smoothness: Option<String>,
}

async fn read_form(mut form: Multipart) -> Result<PictureForm, ApiError> {
    let mut out = PictureForm {
        image: None,
        prompt: None,
        threshold: None,
        smoothness: None,
    };
    let broken = |e: axum::extract::multipart::MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the upload is larger than {} MB", picture::MAX_BYTES >> 20),
            )
        } else {
            ApiError::bad(format!("cannot read the form: {}", e.body_text()))
        }
    };
    while let Some(field) = form.next_field().await.map_err(broken)? {
        let name = field.name().unwrap_or_default().to_string();
        match name.as_str() {
            "image" => out.image = Some(field.bytes().await.map_err(broken)?),
            "prompt" => out.prompt = Some(field.text().await.map_err(broken)?),
            "threshold" => out.threshold = Some(field.text().await.map_err(broken)?),
            "smoothness" => out.smoothness = Some(field.text().await.map_err(broken)?),
            other => return Err(ApiError::bad(format!("unknown form field {other:?}"))),
        }
    }
    Ok(out)
}

async fn post_image(
    State(s): Shared,
    form: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Response, ApiError> {
    let form = form.map_err(|e| {
        ApiError::bad(format!(
            "expected a multipart/form-data body with fields image, prompt, threshold, smoothness: {}",
            e.body_text()
        ))
    })?;
    let form = read_form(form).await?;
    let prompt = form.prompt.unwrap_or_default().trim().to_string();
    if prompt.is_empty() {
        return Err(ApiError::bad(
            "the prompt is empty: say what to segment, e.g. \"red circle\"",
        ));
    }
    live::check_prompt(&prompt, "prompt").map_err(ApiError::bad)?;
    let threshold = match form.threshold.as_deref().map(str::trim) {
        None | Some("") => s.info.default_threshold,
        Some(t) => t
            .parse::<f32>()
            .map_err(|_| ApiError::bad(format!("threshold {t:?} is not a number")))?,
    };
    live::check_threshold(threshold).map_err(ApiError::bad)?;
    let smoothness = match form.smoothness.as_deref().map(str::trim) {
        None | Some("") => 1,
        Some(t) => t
            .parse::<u32>()
            .map_err(|_| ApiError::bad(format!("smoothness {t:?} is not a whole number")))?,
    };
    live::check_smoothness(smoothness).map_err(ApiError::bad)?;
    let bytes = form
        .image
        .ok_or_else(|| ApiError::bad("no image field: attach a JPG or PNG as `image`"))?;

    let _turn = s.picture_turn.lock().await;
    let bundle = s.bundle.clone();
    let p = prompt.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let pic = picture::decode(&bytes).map_err(ApiError::from)?;
        picture::segment(&bundle, &pic, &p, threshold, smoothness)
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e))
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    let (width, height) = (outcome.width, outcome.height);
    let instances = outcome.instances.clone();
    let id = lock(&s.pictures).keep(outcome);
    info!(
        "picture {id}: {width}x{height}, {prompt:?}: {} instance(s)",
        instances.len()
    );
    let link = |f: &str| format!("/api/image/{id}/{f}");
    Ok(axum::Json(json!({
        "id": id.to_string(),
        "width": width,
        "height": height,
        "prompt": prompt,
        "threshold": threshold,
        "smoothness": smoothness,
        "instances": instances,
        "annotated": link("annotated.png"),
        "cutout": link("cutout.png"),
        "mask": link("mask.png"),
        "json": link("instances.json"),
    }))
    .into_response())
}

async fn image_file(
    State(s): Shared,
    Path((id, file)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let gone = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no picture result {id} (only the last few are kept)"),
        )
    };
    let n: u64 = id.parse().map_err(|_| gone())?;
    let outcome = lock(&s.pictures).get(n).ok_or_else(gone)?;
    let (kind, body) = match file.as_str() {
        "annotated.png" => ("image/png", outcome.annotated_png.clone()),
        "cutout.png" => ("image/png", outcome.cutout_png.clone()),
        "mask.png" => ("image/png", outcome.mask_png.clone()),
        "instances.json" => (
            "application/json",
            serde_json::to_vec_pretty(&json!({
                "width": outcome.width,
                "height": outcome.height,
                "instances": outcome.instances,
            }))
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?,
        ),
        other => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no file {other:?}: annotated.png, cutout.png, mask.png or instances.json"),
            ));
        }
    };
    Ok(([(header::CONTENT_TYPE, kind)], body).into_response())
}
