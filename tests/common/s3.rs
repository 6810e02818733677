//! An S3-compatible server for tests: s3s-fs (S3 over a directory) served by
//! hyper on 127.0.0.1:0 inside the test process, with signature checking on
//! and fault switches on multipart upload parts. Used by `tests/archive.rs`
//! (the archive store suite) and `tests/archival.rs` (the archive tier of a
//! log against real S3). Only compiled with the `object-store` feature.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use annal::archive::{ObjectStoreOptions, S3Config};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::dto::{
    AbortMultipartUploadInput, AbortMultipartUploadOutput, CompleteMultipartUploadInput, CompleteMultipartUploadOutput,
    CreateMultipartUploadInput, CreateMultipartUploadOutput, DeleteObjectInput, DeleteObjectOutput, GetObjectInput,
    GetObjectOutput, HeadObjectInput, HeadObjectOutput, ListObjectsV2Input, ListObjectsV2Output, PutObjectInput,
    PutObjectOutput, UploadPartInput, UploadPartOutput,
};
use s3s::{S3, S3Request, S3Response, S3Result, s3_error};

use super::all_files;

pub const ACCESS_KEY: &str = "annal-test-access";
pub const SECRET_KEY: &str = "annal-test-secret-key";
pub const BUCKET: &str = "archive";

/// Switches that make the server misbehave, and counters of what it saw.
#[derive(Debug, Default)]
pub struct Faults {
    /// `Some(n)`: every upload part after the first `n` fails with a 500.
    pub fail_parts_after: Mutex<Option<u64>>,
    /// `Some(n)`: every upload part after the first `n` hangs for a minute.
    pub stall_parts_after: Mutex<Option<u64>>,
    pub parts: AtomicU64,
    pub aborts: AtomicU64,
    pub completes: AtomicU64,
}

/// s3s-fs's file-system S3 server, with fault switches on upload parts.
struct FaultyFs {
    inner: s3s_fs::FileSystem,
    faults: Arc<Faults>,
}

#[async_trait::async_trait]
impl S3 for FaultyFs {
    async fn put_object(&self, req: S3Request<PutObjectInput>) -> S3Result<S3Response<PutObjectOutput>> {
        self.inner.put_object(req).await
    }
    async fn get_object(&self, req: S3Request<GetObjectInput>) -> S3Result<S3Response<GetObjectOutput>> {
        self.inner.get_object(req).await
    }
    async fn head_object(&self, req: S3Request<HeadObjectInput>) -> S3Result<S3Response<HeadObjectOutput>> {
        self.inner.head_object(req).await
    }
    async fn delete_object(&self, req: S3Request<DeleteObjectInput>) -> S3Result<S3Response<DeleteObjectOutput>> {
        self.inner.delete_object(req).await
    }
    async fn list_objects_v2(&self, req: S3Request<ListObjectsV2Input>) -> S3Result<S3Response<ListObjectsV2Output>> {
        self.inner.list_objects_v2(req).await
    }
    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        self.inner.create_multipart_upload(req).await
    }
    async fn upload_part(&self, req: S3Request<UploadPartInput>) -> S3Result<S3Response<UploadPartOutput>> {
        let n = self.faults.parts.fetch_add(1, Ordering::SeqCst);
        if self.faults.fail_parts_after.lock().unwrap().is_some_and(|after| n >= after) {
            return Err(s3_error!(InternalError, "injected failure of upload part {n}"));
        }
        if self.faults.stall_parts_after.lock().unwrap().is_some_and(|after| n >= after) {
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
        self.inner.upload_part(req).await
    }
    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        self.faults.completes.fetch_add(1, Ordering::SeqCst);
        self.inner.complete_multipart_upload(req).await
    }
    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        self.faults.aborts.fetch_add(1, Ordering::SeqCst);
        self.inner.abort_multipart_upload(req).await
    }
}

/// An S3-compatible server on 127.0.0.1 with its own runtime and data directory.
pub struct S3Server {
    addr: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
    pub root: tempfile::TempDir,
    pub faults: Arc<Faults>,
}

impl S3Server {
    pub fn start() -> S3Server {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join(BUCKET)).unwrap();
        let faults = Arc::new(Faults::default());
        let fs = FaultyFs { inner: s3s_fs::FileSystem::new(root.path()).unwrap(), faults: faults.clone() };
        let service = {
            let mut builder = s3s::service::S3ServiceBuilder::new(fs);
            builder.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
            builder.build()
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("s3-test-server")
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        runtime.spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let service = service.clone();
                tokio::spawn(async move {
                    let builder = ConnBuilder::new(TokioExecutor::new());
                    let _ = builder.serve_connection(TokioIo::new(socket), service).await;
                });
            }
        });
        S3Server { addr, runtime: Some(runtime), root, faults }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn config(&self) -> S3Config {
        S3Config::new(self.endpoint(), BUCKET, ACCESS_KEY, SECRET_KEY).allow_http(true)
    }

    /// Stops the server: the listener and every connection are closed.
    pub fn stop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(5));
        }
    }

    /// Files of unfinished multipart uploads in the server's directory.
    pub fn upload_leftovers(&self) -> Vec<String> {
        all_files(self.root.path()).into_iter().filter(|f| f.starts_with(".upload")).collect()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Options for tests: S3's smallest parts, short timeouts, one retry.
pub fn test_options() -> ObjectStoreOptions {
    ObjectStoreOptions::default()
        .part_size(5 << 20)
        .parts_in_flight(2)
        .request_timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(2))
        .max_retries(1)
}
