//! [`ObjectStoreArchive`]: an archive store over the `object_store` crate
//! (S3 and S3-compatible servers, or any other `ObjectStore`).

use std::fmt;
use std::fs::File;
use std::future::Future;
use std::ops::Range;
use std::path::Path as FsPath;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, PutPayload, RetryConfig};
use tokio::runtime::Runtime;
use tokio::task::JoinSet;

use crate::archive::key::{check_key, check_prefix, is_valid_key};
use crate::archive::{
    ArchiveStore, DigestBuilder, ObjectDigest, ObjectMeta, archive_error, check_range, not_found, read_some,
};
use crate::error::{ArchiveErrorKind, Error, IoContext, Result};

/// S3's smallest part size (every part of a multipart upload but the last).
const MIN_S3_PART_SIZE: usize = 5 << 20;

/// The longest a retry of an S3 request waits before trying again.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Timeouts, retries and upload sizes of an [`ObjectStoreArchive`].
#[derive(Debug, Clone)]
#[must_use]
pub struct ObjectStoreOptions {
    request_timeout: Duration,
    connect_timeout: Duration,
    max_retries: usize,
    part_size: usize,
    parts_in_flight: usize,
}

impl Default for ObjectStoreOptions {
    fn default() -> ObjectStoreOptions {
        ObjectStoreOptions {
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            max_retries: 3,
            part_size: 16 << 20,
            parts_in_flight: 4,
        }
    }
}

impl ObjectStoreOptions {
    /// The longest one HTTP request may take (default 30 s). Each step of an
    /// operation (a request with its retries, or waiting for an upload part)
    /// is abandoned with an [`ArchiveErrorKind::Unreachable`] error after
    /// `request_timeout × (max_retries + 1)` plus one second per retry.
    pub fn request_timeout(mut self, timeout: Duration) -> ObjectStoreOptions {
        self.request_timeout = timeout;
        self
    }

    /// The longest establishing a connection may take (default 5 s; S3 constructor only).
    pub fn connect_timeout(mut self, timeout: Duration) -> ObjectStoreOptions {
        self.connect_timeout = timeout;
        self
    }

    /// How often a failed request (connection error, timeout of a read, 5xx
    /// answer) is retried (default 3; S3 constructor only).
    pub fn max_retries(mut self, retries: usize) -> ObjectStoreOptions {
        self.max_retries = retries;
        self
    }

    /// The size of an upload part (default 16 MiB): `put_file` uploads a file
    /// larger than this in parts, and a smaller one in a single request.
    /// At least 5 MiB for S3.
    pub fn part_size(mut self, bytes: usize) -> ObjectStoreOptions {
        self.part_size = bytes;
        self
    }

    /// How many parts of one upload are sent at once (default 4). `put_file`
    /// holds at most `part_size × (parts_in_flight + 1)` bytes in memory.
    pub fn parts_in_flight(mut self, parts: usize) -> ObjectStoreOptions {
        self.parts_in_flight = parts;
        self
    }

    /// How long one step of an operation may take in all.
    fn step_timeout(&self) -> Duration {
        let attempts = u32::try_from(self.max_retries.saturating_add(1)).unwrap_or(u32::MAX);
        let retries = attempts - 1;
        self.request_timeout.saturating_mul(attempts).saturating_add(MAX_BACKOFF.saturating_mul(retries))
    }
}

/// Where and how to reach an S3-compatible endpoint.
#[derive(Clone)]
#[must_use]
pub struct S3Config {
    endpoint: String,
    bucket: String,
    region: String,
    access_key_id: String,
    secret_access_key: String,
    allow_http: bool,
    virtual_hosted_style: bool,
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("allow_http", &self.allow_http)
            .field("virtual_hosted_style", &self.virtual_hosted_style)
            .finish()
    }
}

impl S3Config {
    /// An endpoint (`https://s3.eu-west-1.amazonaws.com`,
    /// `http://127.0.0.1:9000`), a bucket and static credentials; region
    /// `us-east-1`, HTTPS only, path-style requests (`ENDPOINT/BUCKET/KEY`, as
    /// most S3-compatible servers expect).
    ///
    /// Other credential sources (instance metadata, web identity, ...) are
    /// available by building an `object_store::aws::AmazonS3` and passing it
    /// to [`ObjectStoreArchive::new`].
    pub fn new(
        endpoint: impl Into<String>,
        bucket: impl Into<String>,
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
    ) -> S3Config {
        S3Config {
            endpoint: endpoint.into(),
            bucket: bucket.into(),
            region: "us-east-1".into(),
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            allow_http: false,
            virtual_hosted_style: false,
        }
    }

    /// The region to sign requests for (default `us-east-1`).
    pub fn region(mut self, region: impl Into<String>) -> S3Config {
        self.region = region.into();
        self
    }

    /// Allows plain `http://` endpoints (default: HTTPS only).
    pub fn allow_http(mut self, allow: bool) -> S3Config {
        self.allow_http = allow;
        self
    }

    /// Sends virtual-hosted-style requests (`BUCKET.ENDPOINT/KEY`) instead of
    /// path-style ones; the endpoint must then include the bucket.
    pub fn virtual_hosted_style(mut self, on: bool) -> S3Config {
        self.virtual_hosted_style = on;
        self
    }
}

/// An archive store over any [`object_store::ObjectStore`], with a
/// constructor for S3-compatible endpoints ([`ObjectStoreArchive::s3`]).
///
/// The store owns a small tokio runtime (two worker threads) on which it runs
/// every request; its methods block the calling thread until done, and may be
/// called from inside another tokio runtime too (the request then runs from a
/// helper thread). Each step is bounded in time (see
/// [`ObjectStoreOptions::request_timeout`]).
///
/// `put_file` uploads a file larger than the part size as a multipart upload,
/// which the store makes visible under the key only when it completes; if a
/// part fails, the upload is aborted and nothing appears under the key.
///
/// Errors: a missing object is [`ArchiveErrorKind::NotFound`]; a connection
/// that fails, is reset or times out (after the retries) is
/// [`ArchiveErrorKind::Unreachable`]; anything else the store answers (refused
/// credentials, a missing bucket, a server error) is [`ArchiveErrorKind::Other`]
/// with the store's message.
pub struct ObjectStoreArchive {
    name: String,
    /// What [`ArchiveStore::location`] reports: known for S3 stores.
    location: Option<String>,
    store: Arc<dyn ObjectStore>,
    options: ObjectStoreOptions,
    runtime: Option<Runtime>,
}

impl fmt::Debug for ObjectStoreArchive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectStoreArchive").field("name", &self.name).field("options", &self.options).finish()
    }
}

impl ObjectStoreArchive {
    /// Wraps `store`; `name` describes it in messages. Of `options`, the part
    /// size, the parts in flight and the step timeout (request timeout and
    /// retries, see [`ObjectStoreOptions::request_timeout`]) apply; how the
    /// store itself connects, times out and retries is its own configuration.
    pub fn new(name: impl Into<String>, store: Arc<dyn ObjectStore>, options: ObjectStoreOptions) -> Result<Self> {
        let name = name.into();
        if options.part_size == 0 || options.parts_in_flight == 0 {
            return Err(Error::InvalidConfig("the part size and the parts in flight must be at least 1".into()));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("annal-archive")
            .enable_all()
            .build()
            .map_err(|e| Error::Archive {
                store: name.clone(),
                key: String::new(),
                kind: ArchiveErrorKind::Other,
                message: format!("cannot start the archive's runtime: {e}"),
                source: Some(Box::new(e)),
            })?;
        Ok(ObjectStoreArchive { name, location: None, store, options, runtime: Some(runtime) })
    }

    /// A store for an S3-compatible endpoint (AWS S3, MinIO, Ceph RGW, ...),
    /// with `options`' timeouts and retries applied to its HTTP client.
    pub fn s3(config: &S3Config, options: ObjectStoreOptions) -> Result<Self> {
        if options.part_size < MIN_S3_PART_SIZE {
            return Err(Error::InvalidConfig(format!(
                "S3 parts must be at least {MIN_S3_PART_SIZE} bytes, not {}",
                options.part_size
            )));
        }
        let client = ClientOptions::new()
            .with_timeout(options.request_timeout)
            .with_connect_timeout(options.connect_timeout)
            .with_allow_http(config.allow_http);
        let retry = RetryConfig {
            backoff: BackoffConfig { init_backoff: Duration::from_millis(100), max_backoff: MAX_BACKOFF, base: 2.0 },
            max_retries: options.max_retries,
            retry_timeout: options.step_timeout(),
        };
        let store = AmazonS3Builder::new()
            .with_endpoint(&config.endpoint)
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_access_key_id(&config.access_key_id)
            .with_secret_access_key(&config.secret_access_key)
            .with_virtual_hosted_style_request(config.virtual_hosted_style)
            .with_client_options(client)
            .with_retry(retry)
            .build()
            .map_err(|e| Error::InvalidConfig(format!("S3 bucket {} at {}: {e}", config.bucket, config.endpoint)))?;
        let name = format!("s3 bucket {} at {}", config.bucket, config.endpoint);
        let mut archive = ObjectStoreArchive::new(name, Arc::new(store), options)?;
        archive.location =
            Some(format!("s3://{}?endpoint={}&region={}", config.bucket, config.endpoint, config.region));
        Ok(archive)
    }

    /// The wrapped store.
    pub fn inner(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Runs `fut` to completion on the store's runtime, from a helper thread
    /// if the caller is itself inside a tokio runtime (where blocking on
    /// another runtime is not allowed).
    fn block_on<F>(&self, key: &str, fut: F) -> Result<F::Output>
    where
        F: Future + Send,
        F::Output: Send,
    {
        let Some(runtime) = &self.runtime else {
            return Err(self.error(key, ArchiveErrorKind::Other, "the store's runtime is shut down"));
        };
        if tokio::runtime::Handle::try_current().is_err() {
            return Ok(runtime.block_on(fut));
        }
        std::thread::scope(|scope| scope.spawn(|| runtime.block_on(fut)).join())
            .map_err(|_| self.error(key, ArchiveErrorKind::Other, "an archive request panicked"))
    }

    /// Awaits one step of an operation, within the step timeout.
    async fn step<T>(&self, key: &str, what: &str, fut: impl Future<Output = object_store::Result<T>>) -> Result<T> {
        match tokio::time::timeout(self.options.step_timeout(), fut).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(self.map_error(key, what, e)),
            Err(_) => Err(self.timed_out(key, what)),
        }
    }

    fn timed_out(&self, key: &str, what: &str) -> Error {
        let limit = self.options.step_timeout();
        self.error(key, ArchiveErrorKind::Unreachable, format!("{what}: no answer within {limit:?}"))
    }

    fn error(&self, key: &str, kind: ArchiveErrorKind, message: impl Into<String>) -> Error {
        archive_error(&self.name, key, kind, message)
    }

    /// Maps an `object_store` error to an [`Error::Archive`].
    fn map_error(&self, key: &str, what: &str, e: object_store::Error) -> Error {
        let kind = match &e {
            object_store::Error::NotFound { .. } => ArchiveErrorKind::NotFound,
            object_store::Error::InvalidPath { .. } => ArchiveErrorKind::InvalidKey,
            other if is_network_error(other) => ArchiveErrorKind::Unreachable,
            _ => ArchiveErrorKind::Other,
        };
        Error::Archive {
            store: self.name.clone(),
            key: key.to_owned(),
            kind,
            message: format!("{what}: {}", error_chain(&e)),
            source: Some(Box::new(e)),
        }
    }

    /// The `object_store` path of a valid key.
    fn path(&self, key: &str) -> Result<Path> {
        check_key(&self.name, key)?;
        Path::parse(key).map_err(|e| self.error(key, ArchiveErrorKind::InvalidKey, e.to_string()))
    }

    /// Checks that the object under `key` exists and that `range` lies within it.
    fn check_range_of(&self, key: &str, range: &Range<u64>) -> Result<()> {
        let meta = self.head(key)?.ok_or_else(|| not_found(&self.name, key))?;
        check_range(&self.name, key, range, meta.size)
    }

    /// Uploads a file in parts; aborts the upload if anything fails.
    async fn put_file_multipart(
        &self,
        key: &str,
        location: &Path,
        mut file: File,
        path: &FsPath,
    ) -> Result<ObjectDigest> {
        let mut upload = self.step(key, "start multipart upload", self.store.put_multipart(location)).await?;
        let mut parts: JoinSet<object_store::Result<()>> = JoinSet::new();
        let sent = async {
            let mut builder = DigestBuilder::default();
            let mut first = true;
            loop {
                let mut buf = vec![0u8; self.options.part_size];
                let n = read_some(&mut file, &mut buf).ctx("read", path)?;
                if n == 0 && !first {
                    break;
                }
                first = false;
                buf.truncate(n);
                builder.update(&buf);
                while parts.len() >= self.options.parts_in_flight {
                    self.join_part(key, &mut parts).await?;
                }
                parts.spawn(upload.put_part(PutPayload::from(buf)));
                if n < self.options.part_size {
                    break;
                }
            }
            while !parts.is_empty() {
                self.join_part(key, &mut parts).await?;
            }
            Ok::<_, Error>(builder.finish())
        }
        .await;
        let digest = match sent {
            Ok(digest) => digest,
            Err(e) => {
                parts.shutdown().await;
                // Best effort: if the abort fails too, the parts stay on the
                // server (unlisted, invisible under the key) until the
                // bucket's lifecycle rules remove them.
                let _ = tokio::time::timeout(self.options.step_timeout(), upload.abort()).await;
                return Err(e);
            }
        };
        match self.step(key, "complete multipart upload", upload.complete()).await {
            Ok(_) => Ok(digest),
            Err(e) => {
                let _ = tokio::time::timeout(self.options.step_timeout(), upload.abort()).await;
                Err(e)
            }
        }
    }

    /// Waits for one uploading part to finish.
    async fn join_part(&self, key: &str, parts: &mut JoinSet<object_store::Result<()>>) -> Result<()> {
        match tokio::time::timeout(self.options.step_timeout(), parts.join_next()).await {
            Err(_) => Err(self.timed_out(key, "upload part")),
            Ok(None) | Ok(Some(Ok(Ok(())))) => Ok(()),
            Ok(Some(Ok(Err(e)))) => Err(self.map_error(key, "upload part", e)),
            Ok(Some(Err(e))) => Err(self.error(key, ArchiveErrorKind::Other, format!("upload part: {e}"))),
        }
    }
}

impl Drop for ObjectStoreArchive {
    fn drop(&mut self) {
        // Dropping a runtime inside another runtime's context panics; letting
        // it shut down in the background never does.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// True if `e` or one of its sources says the request never got an answer:
/// a connection failure, a reset, a timeout.
fn is_network_error(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(e);
    while let Some(err) = current {
        // object_store's S3 client wraps reqwest's errors (its own `HttpError`
        // is transparent in the source chain, so it is seldom seen there).
        if let Some(http) = err.downcast_ref::<reqwest::Error>()
            && (http.is_connect() || http.is_timeout() || http.is_request())
        {
            return true;
        }
        if let Some(http) = err.downcast_ref::<object_store::client::HttpError>() {
            use object_store::client::HttpErrorKind as K;
            if matches!(http.kind(), K::Connect | K::Request | K::Timeout | K::Interrupted) {
                return true;
            }
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            if matches!(
                io.kind(),
                K::ConnectionRefused
                    | K::ConnectionReset
                    | K::ConnectionAborted
                    | K::NotConnected
                    | K::BrokenPipe
                    | K::TimedOut
                    | K::UnexpectedEof
                    | K::HostUnreachable
                    | K::NetworkUnreachable
            ) {
                return true;
            }
        }
        current = err.source();
    }
    false
}

/// `e` and its sources, joined with `: ` (skipping repeats).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut current = e.source();
    while let Some(err) = current {
        let part = err.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        current = err.source();
    }
    text
}

impl ArchiveStore for ObjectStoreArchive {
    fn name(&self) -> &str {
        &self.name
    }

    fn location(&self) -> Option<String> {
        self.location.clone()
    }

    fn put(&self, key: &str, bytes: &[u8]) -> Result<ObjectDigest> {
        let location = self.path(key)?;
        let digest = ObjectDigest::of(bytes);
        let payload = PutPayload::from(bytes.to_vec());
        self.block_on(key, self.step(key, "put", self.store.put(&location, payload)))??;
        Ok(digest)
    }

    fn put_file(&self, key: &str, path: &FsPath) -> Result<ObjectDigest> {
        let location = self.path(key)?;
        let mut file = File::open(path).ctx("open", path)?;
        let size = file.metadata().ctx("stat", path)?.len();
        if size <= self.options.part_size as u64 {
            // One request; the buffer is bounded by the part size (the file
            // may have grown since: read at most one part more than that).
            let mut buf = vec![0u8; self.options.part_size];
            let n = read_some(&mut file, &mut buf).ctx("read", path)?;
            if n < buf.len() {
                buf.truncate(n);
                let digest = ObjectDigest::of(&buf);
                let payload = PutPayload::from(buf);
                self.block_on(key, self.step(key, "put", self.store.put(&location, payload)))??;
                return Ok(digest);
            }
            // It grew to at least a part: upload it in parts from the start.
            file = File::open(path).ctx("open", path)?;
        }
        self.block_on(key, self.put_file_multipart(key, &location, file, path))?
    }

    fn get_range(&self, key: &str, range: Range<u64>) -> Result<Vec<u8>> {
        let location = self.path(key)?;
        if range.start >= range.end {
            // Nothing to read, but the object must exist and the range lie within it.
            self.check_range_of(key, &range)?;
            return Ok(Vec::new());
        }
        let result = self.block_on(key, self.step(key, "get range", self.store.get_range(&location, range.clone())))?;
        let wanted = range.end - range.start;
        match result {
            Ok(bytes) if bytes.len() as u64 == wanted => Ok(bytes.to_vec()),
            // A short answer or a refused range (S3 answers 416 for a range
            // that starts past the end): say why, precisely.
            Ok(bytes) => {
                self.check_range_of(key, &range)?;
                let message = format!("get range {range:?}: the store returned {} bytes, not {wanted}", bytes.len());
                Err(self.error(key, ArchiveErrorKind::Other, message))
            }
            Err(e) if e.archive_kind() == Some(ArchiveErrorKind::Other) => {
                self.check_range_of(key, &range)?;
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        let location = self.path(key)?;
        let result = self.block_on(key, self.step(key, "head", self.store.head(&location)))?;
        match result {
            Ok(meta) => Ok(Some(ObjectMeta { key: key.to_owned(), size: meta.size, e_tag: meta.e_tag })),
            Err(e) if e.archive_kind() == Some(ArchiveErrorKind::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        check_prefix(&self.name, prefix)?;
        // object_store lists whole path segments: list the deepest directory
        // the prefix names entirely, then filter by the string prefix.
        let dir = match prefix.rfind('/') {
            Some(i) => Some(
                Path::parse(&prefix[..i])
                    .map_err(|e| self.error(prefix, ArchiveErrorKind::InvalidKey, e.to_string()))?,
            ),
            None => None,
        };
        let mut out = self.block_on(prefix, async {
            let mut stream = self.store.list(dir.as_ref());
            let mut out = Vec::new();
            loop {
                let item = match tokio::time::timeout(self.options.step_timeout(), stream.next()).await {
                    Err(_) => return Err(self.timed_out(prefix, "list")),
                    Ok(None) => return Ok(out),
                    Ok(Some(item)) => item.map_err(|e| self.map_error(prefix, "list", e))?,
                };
                let key = item.location.as_ref();
                if key.starts_with(prefix) && is_valid_key(key) {
                    out.push(ObjectMeta { key: key.to_owned(), size: item.size, e_tag: item.e_tag });
                }
            }
        })??;
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<()> {
        let location = self.path(key)?;
        let result = self.block_on(key, self.step(key, "delete", self.store.delete(&location)))?;
        match result {
            Ok(()) => Ok(()),
            Err(e) if e.archive_kind() == Some(ArchiveErrorKind::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
