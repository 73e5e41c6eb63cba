//! `/otto/artifact/1` on real swarms over loopback: a verified transfer, a transfer that
//! breaks off and resumes from where it stopped, and a provider serving corrupted bytes.

use crate::mesh_support::{Transport, bytes, config, digest, spawn_with, trust_each_other, within};
use otto_node::mesh::{Fetched, MeshError};

const MIB: usize = 1024 * 1024;

/// A configuration with small chunks, so a few MiB make many chunks.
fn small_chunks() -> otto_node::mesh::Config {
    otto_node::mesh::Config {
        artifact_chunk_size: 256 * 1024,
        ..config()
    }
}

//   provider ◀──fetch 4 MiB── fetcher
#[tokio::test]
async fn an_artifact_of_a_few_mib_arrives_verified() {
    let mut provider = spawn_with(30, Transport::Tcp, small_chunks()).await;
    let mut fetcher = spawn_with(31, Transport::Tcp, small_chunks()).await;
    trust_each_other(&provider, &fetcher);
    fetcher.connect(&mut provider).await;
    let artifact = bytes(4 * MIB + 123, 1);
    let sha256 = digest(&artifact);
    provider.source.insert(sha256, artifact.clone());

    let dir = tempfile::tempdir().expect("tempdir");
    let dest = dir.path().join("artifact");
    let fetched = within(
        fetcher
            .client
            .fetch_artifact(provider.peer(), sha256, &dest, 0),
    )
    .await
    .expect("fetched");
    assert_eq!(
        fetched,
        Fetched {
            size: artifact.len() as u64,
            resumed_from: 0
        }
    );
    assert!(std::fs::read(&dest).expect("file") == artifact);
}

//   provider ──1.5 MiB, then the stream breaks──▶ fetcher
//   provider ──the rest, from the offset──▶ fetcher
#[tokio::test]
async fn an_interrupted_transfer_resumes_from_its_offset() {
    let mut provider = spawn_with(32, Transport::Tcp, small_chunks()).await;
    let mut fetcher = spawn_with(33, Transport::Tcp, small_chunks()).await;
    trust_each_other(&provider, &fetcher);
    fetcher.connect(&mut provider).await;
    let artifact = bytes(3 * MIB, 2);
    let sha256 = digest(&artifact);
    provider.source.insert(sha256, artifact.clone());
    provider.source.set_cut(Some(3 * MIB / 2 + 1000));

    let dir = tempfile::tempdir().expect("tempdir");
    let dest = dir.path().join("artifact");
    let broken = within(
        fetcher
            .client
            .fetch_artifact(provider.peer(), sha256, &dest, 0),
    )
    .await;
    let Err(MeshError::Incomplete {
        received, total, ..
    }) = broken
    else {
        panic!("expected an incomplete transfer, got {broken:?}");
    };
    assert_eq!(total, artifact.len() as u64);
    assert!(received > 0 && received < total, "{received} of {total}");
    let partial = std::fs::read(&dest).expect("partial file");
    assert_eq!(partial.len() as u64, received);
    assert!(
        partial[..] == artifact[..partial.len()],
        "the partial file is a prefix"
    );

    provider.source.set_cut(None);
    let fetched = within(
        fetcher
            .client
            .fetch_artifact(provider.peer(), sha256, &dest, received),
    )
    .await
    .expect("resumed");
    assert_eq!(fetched.resumed_from, received);
    assert_eq!(fetched.size, total);
    assert!(std::fs::read(&dest).expect("file") == artifact);
    assert_eq!(
        provider.source.offsets(),
        vec![0, received],
        "the second request starts at the first byte missing"
    );
}

//   provider (bytes corrupted under the right digest) ──▶ fetcher
#[tokio::test]
async fn a_corrupted_source_is_detected_and_its_bytes_removed() {
    let mut provider = spawn_with(34, Transport::Tcp, small_chunks()).await;
    let mut fetcher = spawn_with(35, Transport::Tcp, small_chunks()).await;
    trust_each_other(&provider, &fetcher);
    fetcher.connect(&mut provider).await;
    let artifact = bytes(MIB + 17, 3);
    let sha256 = digest(&artifact);
    let mut corrupted = artifact.clone();
    corrupted[MIB / 2] ^= 0x01;
    provider.source.insert(sha256, corrupted.clone());

    let dir = tempfile::tempdir().expect("tempdir");
    let dest = dir.path().join("artifact");
    let result = within(
        fetcher
            .client
            .fetch_artifact(provider.peer(), sha256, &dest, 0),
    )
    .await;
    match result {
        Err(MeshError::DigestMismatch { expected, actual }) => {
            assert_eq!(expected, sha256);
            assert_eq!(actual, digest(&corrupted));
        }
        other => panic!("expected a digest mismatch, got {other:?}"),
    }
    assert!(!dest.exists(), "the bad bytes are not left behind");
}

//   provider ◀──fetch of an unknown digest── fetcher
#[tokio::test]
async fn an_artifact_the_provider_lacks_is_unavailable() {
    let mut provider = spawn_with(36, Transport::Quic, small_chunks()).await;
    let mut fetcher = spawn_with(37, Transport::Quic, small_chunks()).await;
    trust_each_other(&provider, &fetcher);
    fetcher.connect(&mut provider).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let result = within(fetcher.client.fetch_artifact(
        provider.peer(),
        digest(b"nothing"),
        &dir.path().join("x"),
        0,
    ))
    .await;
    assert!(
        matches!(result, Err(MeshError::ArtifactUnavailable { .. })),
        "{result:?}"
    );
}
