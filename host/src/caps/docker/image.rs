//! Which local image a spawn runs, checked against the manifest's pin.
//!
//! Pulp never pulls: an image is what the Docker host has under that name.
//! A name can be re-tagged to other content at any time, so a manifest may
//! pin `name@sha256:<hex>`. The pin is checked against the local image: its
//! id (the digest of its configuration, what `docker build` and `docker
//! images --digests` show for a local build) or one of its repository digests
//! (what a registry pull records) must be that digest, and the container is
//! then created from the image id itself, so a re-tag between the check and
//! the create changes nothing.

use bollard::models::ImageInspect;
use bollard::Docker;

/// The image to run and the directories its `VOLUME` lines declare.
pub struct LocalImage {
    /// What to hand `create`: the image id for a pinned reference, else the reference.
    pub run: String,
    /// `VOLUME` paths of the image: Docker would give each a writable volume
    /// on the host's disk, so each gets a tmpfs instead.
    pub volumes: Vec<String>,
}

/// Finds `reference` (as the manifest allows it) on the Docker host.
pub async fn resolve(docker: &Docker, reference: &str) -> Result<LocalImage, String> {
    let Some((name, digest)) = reference.split_once('@') else {
        let found = inspect(docker, reference).await?;
        return Ok(local(found, reference.to_string()));
    };
    // A local build: the digest is its id. A pulled image: one of its repo digests.
    let by_id = docker.inspect_image(digest).await.ok();
    let found = match by_id {
        Some(image) if image.id.as_deref() == Some(digest) => image,
        _ => docker.inspect_image(reference).await.map_err(|_| {
            format!(
                "image {reference}: no image on the Docker host has digest {digest} (the pin is checked \
                 against local images; {name} may have been rebuilt or re-tagged; Pulp never pulls)"
            )
        })?,
    };
    let pinned = found.id.as_deref() == Some(digest)
        || found
            .repo_digests
            .iter()
            .flatten()
            .any(|d| d.split_once('@').is_some_and(|(_, d)| d == digest));
    let id = found.id.clone().filter(|_| pinned).ok_or_else(|| {
        format!("image {reference}: the local image does not have digest {digest}")
    })?;
    Ok(local(found, id))
}

async fn inspect(docker: &Docker, reference: &str) -> Result<ImageInspect, String> {
    docker.inspect_image(reference).await.map_err(|e| match e {
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        } => format!("image {reference} is not on the Docker host (Pulp never pulls images)"),
        other => format!("image {reference}: {other}"),
    })
}

fn local(image: ImageInspect, run: String) -> LocalImage {
    let mut volumes: Vec<String> = image
        .config
        .and_then(|c| c.volumes)
        .map(|v| v.into_keys().collect())
        .unwrap_or_default();
    volumes.sort();
    LocalImage { run, volumes }
}
