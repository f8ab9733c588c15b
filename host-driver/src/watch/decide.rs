//! What watch does about one service: a pure function of what it sees of
//! the service's router and container, tested case by case.

/// What a router looks like to [`decide`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouterView;

/// What a service looks like to [`decide`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceView {
    pub running: bool,
    /// Labelled `netcontainer.enable=true`.
    pub enabled: bool,
    /// A Swarm task's container (`com.docker.swarm.*` labels).
    pub swarm_task: bool,
    /// A Compose one-off (`docker-compose run`) without a
    /// `netcontainer.identity` of its own: it carries its service's labels,
    /// so `netcontainer.enable` says nothing about it.
    pub oneoff: bool,
}

/// The options of `watch` that [`decide`] depends on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecideOptions {
    pub release_when_stopped: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Nothing,
    /// Create a router for the service.
    Up,
    /// Bring the router in line with its service.
    Heal,
    /// The service is gone: take its router down.
    DownGone,
    /// The service stopped and `--release-when-stopped`: take its router down.
    DownStopped,
    /// A Swarm task's container stopped: it never runs again (a new task gets
    /// a new container, maybe on another node, with the same identity), so its
    /// router goes at once and the lease is released for the new one.
    DownSwarmTask,
}

/// What to do about one service, from its router and its container.
pub fn decide(
    router: Option<RouterView>,
    service: Option<ServiceView>,
    opts: DecideOptions,
) -> Action {
    match (router, service) {
        (Some(_), None) => Action::DownGone,
        (Some(_), Some(s)) if !s.running && s.swarm_task => Action::DownSwarmTask,
        (Some(_), Some(s)) if !s.running && opts.release_when_stopped && s.enabled => {
            Action::DownStopped
        }
        (Some(_), Some(_)) => Action::Heal,
        (None, Some(s)) if s.running && s.enabled && !s.oneoff => Action::Up,
        (None, _) => Action::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: Option<RouterView> = Some(RouterView);

    const KEEP: DecideOptions = DecideOptions {
        release_when_stopped: false,
    };
    const RELEASE: DecideOptions = DecideOptions {
        release_when_stopped: true,
    };

    fn svc(running: bool, enabled: bool) -> Option<ServiceView> {
        Some(ServiceView {
            running,
            enabled,
            swarm_task: false,
            oneoff: false,
        })
    }

    #[test]
    fn nothing_without_router_or_service() {
        assert_eq!(decide(None, None, KEEP), Action::Nothing);
        assert_eq!(decide(None, None, RELEASE), Action::Nothing);
    }

    #[test]
    fn a_running_labelled_service_without_router_gets_one() {
        assert_eq!(decide(None, svc(true, true), KEEP), Action::Up);
        assert_eq!(decide(None, svc(true, true), RELEASE), Action::Up);
    }

    #[test]
    fn an_unlabelled_or_stopped_service_without_router_gets_none() {
        assert_eq!(decide(None, svc(true, false), KEEP), Action::Nothing);
        assert_eq!(decide(None, svc(false, true), KEEP), Action::Nothing);
        assert_eq!(decide(None, svc(false, true), RELEASE), Action::Nothing);
        assert_eq!(decide(None, svc(false, false), RELEASE), Action::Nothing);
    }

    #[test]
    fn a_router_whose_service_is_gone_goes_down() {
        assert_eq!(decide(R, None, KEEP), Action::DownGone);
        assert_eq!(decide(R, None, RELEASE), Action::DownGone);
    }

    #[test]
    fn a_router_of_a_running_service_is_healed() {
        assert_eq!(decide(R, svc(true, true), KEEP), Action::Heal);
        assert_eq!(decide(R, svc(true, true), RELEASE), Action::Heal);
        // Made by `up` for an unlabelled service: kept in line, never removed.
        assert_eq!(decide(R, svc(true, false), KEEP), Action::Heal);
        assert_eq!(decide(R, svc(true, false), RELEASE), Action::Heal);
    }

    #[test]
    fn a_stopped_service_keeps_its_router_unless_released() {
        assert_eq!(decide(R, svc(false, true), KEEP), Action::Heal);
        assert_eq!(decide(R, svc(false, true), RELEASE), Action::DownStopped);
        // --release-when-stopped applies to labelled services only.
        assert_eq!(decide(R, svc(false, false), RELEASE), Action::Heal);
    }

    #[test]
    fn a_stopped_swarm_task_releases_at_once() {
        let task = |running| {
            Some(ServiceView {
                running,
                enabled: true,
                swarm_task: true,
                oneoff: false,
            })
        };
        assert_eq!(decide(R, task(false), KEEP), Action::DownSwarmTask);
        assert_eq!(decide(R, task(false), RELEASE), Action::DownSwarmTask);
        assert_eq!(decide(R, task(true), KEEP), Action::Heal);
        assert_eq!(decide(None, task(true), KEEP), Action::Up);
    }

    #[test]
    fn a_compose_one_off_gets_no_router_unless_it_has_its_own_identity() {
        let oneoff = |running| {
            Some(ServiceView {
                running,
                enabled: true,
                swarm_task: false,
                oneoff: true,
            })
        };
        assert_eq!(decide(None, oneoff(true), KEEP), Action::Nothing);
        // One made by hand (`up`) is kept in line and goes with its container.
        assert_eq!(decide(R, oneoff(true), KEEP), Action::Heal);
        assert_eq!(decide(R, None, KEEP), Action::DownGone);
    }
}
