//! A closer look at one container, for health gates and supervision: its state with exit
//! code and restart count, Docker's HEALTHCHECK verdict with the last check's output, its
//! address on its network, and the last lines of its log.

use std::net::IpAddr;

use bollard::container::LogOutput;
use bollard::models::{ContainerStateStatusEnum, HealthStatusEnum};
use bollard::query_parameters::{LogsOptionsBuilder, RestartContainerOptionsBuilder};
use futures_util::StreamExt as _;
use reconcile_core::{ContainerState, HealthStatus};

use crate::{Docker, RuntimeError};

/// Most bytes of log kept for a failure report.
const LOG_TAIL_BYTES: usize = 4096;
/// Most bytes of a HEALTHCHECK's output kept.
const HEALTH_OUTPUT_BYTES: usize = 512;

/// One container as `inspect` shows it, reduced to what a health gate needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerInfo {
    /// Docker's id.
    pub id: String,
    /// Its state; `Exited` carries the exit code.
    pub state: ContainerState,
    /// Docker's HEALTHCHECK verdict, when the image or container defines one.
    pub health: Option<HealthStatus>,
    /// The output of the last HEALTHCHECK run, trimmed.
    pub health_output: Option<String>,
    /// The exit code of its last run, while it is restarting or after it exited.
    pub last_exit_code: Option<i64>,
    /// How often Docker's restart policy restarted it.
    pub restart_count: u64,
    /// Killed for running out of memory.
    pub oom_killed: bool,
    /// Docker's own error for the container (a failed start), if any.
    pub error: Option<String>,
    /// Its address on its first network with one; `None` with host networking or none.
    pub address: Option<IpAddr>,
    /// It shares the host's network: `localhost` probes go to the host.
    pub host_network: bool,
    /// When it last started, as Docker writes it (RFC 3339, UTC, with nanoseconds); `None`
    /// when it never started.
    pub started_at: Option<String>,
}

/// A container's state as an inspection reports it.
pub(crate) fn state_of(s: &bollard::models::ContainerState) -> ContainerState {
    match s.status {
        Some(ContainerStateStatusEnum::RUNNING) => ContainerState::Running,
        Some(ContainerStateStatusEnum::PAUSED) => ContainerState::Paused,
        Some(ContainerStateStatusEnum::RESTARTING) => ContainerState::Restarting,
        Some(ContainerStateStatusEnum::REMOVING) => ContainerState::Removing,
        Some(ContainerStateStatusEnum::DEAD) => ContainerState::Dead,
        Some(ContainerStateStatusEnum::EXITED) => ContainerState::Exited {
            code: s.exit_code.unwrap_or(0),
        },
        _ => ContainerState::Created,
    }
}

impl Docker {
    /// Inspects one container.
    ///
    /// # Errors
    /// [`RuntimeError::NotFound`] when it is gone, or what else Docker says.
    pub async fn inspect(&self, id: &str) -> Result<ContainerInfo, RuntimeError> {
        let c = self
            .api
            .inspect_container(id, None)
            .await
            .map_err(RuntimeError::from_bollard)?;
        let s = c.state.unwrap_or_default();
        let state = state_of(&s);
        let (health, health_output) = match s.health {
            Some(h) => {
                let status = match h.status {
                    Some(HealthStatusEnum::STARTING) => Some(HealthStatus::Starting),
                    Some(HealthStatusEnum::HEALTHY) => Some(HealthStatus::Healthy),
                    Some(HealthStatusEnum::UNHEALTHY) => Some(HealthStatus::Unhealthy),
                    _ => None,
                };
                let output = h
                    .log
                    .and_then(|l| l.into_iter().last())
                    .and_then(|r| r.output)
                    .map(|o| clip(o.trim(), HEALTH_OUTPUT_BYTES));
                (status, output.filter(|o| !o.is_empty()))
            }
            None => (None, None),
        };
        let host_network = c
            .host_config
            .as_ref()
            .and_then(|h| h.network_mode.as_deref())
            .is_some_and(|m| m == "host");
        let networks = c.network_settings.and_then(|n| n.networks);
        let mut names: Vec<(String, Option<String>)> = networks
            .unwrap_or_default()
            .into_iter()
            .map(|(name, e)| (name, e.ip_address))
            .collect();
        // Several networks: take the first by name, so the choice is stable.
        names.sort();
        let address = names
            .into_iter()
            .filter_map(|(_, ip)| ip.filter(|ip| !ip.is_empty()))
            .find_map(|ip| ip.parse().ok());
        Ok(ContainerInfo {
            id: c.id.unwrap_or_else(|| id.to_owned()),
            state,
            health,
            health_output,
            last_exit_code: s.exit_code.filter(|_| state != ContainerState::Running),
            restart_count: c
                .restart_count
                .and_then(|n| u64::try_from(n).ok())
                .unwrap_or(0),
            oom_killed: s.oom_killed.unwrap_or(false),
            error: s.error.filter(|e| !e.is_empty()),
            address,
            host_network,
            // Docker writes the zero time (year 1) for a container never started.
            started_at: s
                .started_at
                .filter(|t| !t.is_empty() && !t.starts_with("0001-")),
        })
    }

    /// The last `lines` lines of a container's output (stdout and stderr), at most 4 KiB, for
    /// failure reports. Control characters other than tab are dropped.
    ///
    /// # Errors
    /// What Docker says.
    pub async fn logs_tail(&self, id: &str, lines: usize) -> Result<Vec<String>, RuntimeError> {
        let options = LogsOptionsBuilder::new()
            .stdout(true)
            .stderr(true)
            .tail(&lines.to_string())
            .build();
        let mut stream = self.api.logs(id, Some(options));
        let mut text = Vec::new();
        while let Some(chunk) = stream.next().await {
            let bytes = match chunk.map_err(RuntimeError::from_bollard)? {
                LogOutput::StdOut { message }
                | LogOutput::StdErr { message }
                | LogOutput::Console { message }
                | LogOutput::StdIn { message } => message,
            };
            text.extend_from_slice(&bytes);
            if text.len() > 4 * LOG_TAIL_BYTES {
                // Keep the end: the last lines are the ones that explain a crash.
                text.drain(..text.len() - LOG_TAIL_BYTES);
            }
        }
        let start = text.len().saturating_sub(LOG_TAIL_BYTES);
        let text = String::from_utf8_lossy(&text[start..]).into_owned();
        Ok(text
            .lines()
            .map(|l| {
                l.chars()
                    .filter(|c| *c == '\t' || !c.is_control())
                    .collect::<String>()
            })
            .filter(|l| !l.trim().is_empty())
            .rev()
            .take(lines)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect())
    }

    /// Restarts a container (stop with `grace_seconds`, then start).
    ///
    /// # Errors
    /// What Docker says.
    pub async fn restart(&self, id: &str, grace_seconds: i32) -> Result<(), RuntimeError> {
        let options = RestartContainerOptionsBuilder::new()
            .t(grace_seconds)
            .build();
        self.api
            .restart_container(id, Some(options))
            .await
            .map_err(RuntimeError::from_bollard)
    }
}

/// At most `max` bytes of `s`, cut at a character boundary.
fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clipping_keeps_characters_whole() {
        assert_eq!(clip("abc", 5), "abc");
        assert_eq!(clip("ééé", 3), "é…");
    }
}
