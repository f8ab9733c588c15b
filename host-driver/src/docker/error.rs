//! The Docker side's errors: one line each, with a hint where one helps.

use bollard::errors::Error as BollardError;

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("cannot reach the Docker daemon: {0}")]
    Unreachable(String),
    #[error("no such container: {0}")]
    NoSuchContainer(String),
    #[error(transparent)]
    Name(#[from] crate::state::NameError),
    /// This host's ID (part of a service's identity) cannot be had.
    #[error(transparent)]
    HostId(#[from] crate::state::StateError),
    #[error("network {0} is not attachable: a router cannot join it")]
    NotAttachable(String),
    #[error(
        "network {network} has inter-container traffic off (com.docker.network.bridge.enable_icc=false): Docker drops what the router forwards to {service} on it"
    )]
    NoIcc { network: String, service: String },
    /// Neither on this host nor in the registry the reference names (the
    /// pull found no such repository or tag).
    #[error("router image {0} is not on this host and its registry does not have it")]
    NoImage(String),
    #[error("cannot pull router image {image}: {detail}")]
    Pull { image: String, detail: String },
    /// The router image a reference names is not the pinned content, and
    /// the pinned content cannot be had: nothing is created.
    #[error("router image {image} is not the image this build expects ({wanted}): {why}")]
    NotPinned {
        image: String,
        /// The pinned image ID or digest.
        wanted: String,
        why: String,
    },
    /// The record of pins, or a pin in `--image`, does not parse or cannot
    /// be trusted.
    #[error("router image pins: {0}")]
    PinRecord(String),
    #[error("{what}: {source}")]
    Api {
        what: String,
        #[source]
        source: BollardError,
    },
}

impl DockerError {
    /// Docker's "multiple IDs found with provided prefix": a name that no
    /// container has exactly, but that begins several containers' IDs.
    pub fn is_ambiguous(&self) -> bool {
        matches!(self, DockerError::Api { source, .. } if source.to_string().contains("multiple IDs found"))
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            DockerError::Unreachable(_) => Some(
                "is dockerd running, and are you root? (DOCKER_HOST selects another socket)".into(),
            ),
            DockerError::NoSuchContainer(_) => {
                Some("`docker ps` lists the running containers".into())
            }
            DockerError::NoImage(_) => Some(
                "check the name and tag (--image); build the image here with ./scripts/build-router-image, or push it to your registry with ./scripts/publish-router-image; a private repository needs `docker login` (~/.docker/config.json)".into(),
            ),
            DockerError::Pull { detail, .. } => Some(
                if ["unauthorized", "denied", "authentication required"]
                    .iter()
                    .any(|w| detail.to_ascii_lowercase().contains(w))
                {
                    "netcontainer uses the login `docker login` stored in ~/.docker/config.json (auths; credential helpers are not run)"
                } else {
                    "is the registry reachable from this host? (`docker pull` of the same reference shows the daemon's view)"
                }
                .into(),
            ),
            DockerError::NotPinned { .. } => Some(
                "rebuild the image here with ./scripts/build-router-image (it records its ID), or pull the pinned digest from a registry that has it; to run another image on purpose, name it with --image REF@sha256:DIGEST (docs/operations.md, \"Pinning the router image\")".into(),
            ),
            DockerError::PinRecord(_) => Some(
                "scripts/build-router-image and scripts/publish-router-image write the record (REFERENCE PIN a line, root's alone): fix or remove the line".into(),
            ),
            DockerError::Name(e) => Some(e.hint().into()),
            DockerError::HostId(e) => e.hint(),
            DockerError::NotAttachable(n) => Some(format!(
                "a Swarm overlay must be attachable for a router to join it: create it with `docker network create -d overlay --attachable {n}` (an existing network cannot be changed)"
            )),
            DockerError::NoIcc { service, .. } => Some(format!(
                "put {service} also on a network with ICC on and choose it: `docker network create NET; docker network connect NET {service}; netcontainer up {service} --network NET`"
            )),
            DockerError::Api { .. } => None,
        }
    }
}

pub(super) fn api(what: impl Into<String>) -> impl FnOnce(BollardError) -> DockerError {
    let what = what.into();
    move |source| DockerError::Api { what, source }
}

pub(super) fn is_404(e: &BollardError) -> bool {
    matches!(
        e,
        BollardError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// The network named in Docker's "network X not manually attachable".
pub(super) fn not_attachable(e: &BollardError) -> Option<String> {
    let msg = e.to_string();
    let head = msg.split(" not manually attachable").next()?;
    if head.len() == msg.len() {
        return None;
    }
    head.rsplit(' ').next().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_attachable_names_the_network() {
        let e = BollardError::DockerResponseServerError {
            status_code: 500,
            message: "Could not attach to network appnet: rpc error: code = PermissionDenied desc = network appnet not manually attachable".into(),
        };
        assert_eq!(not_attachable(&e).as_deref(), Some("appnet"));
        let other = BollardError::DockerResponseServerError {
            status_code: 500,
            message: "something else".into(),
        };
        assert_eq!(not_attachable(&other), None);
    }
}
