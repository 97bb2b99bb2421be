//! The node's interfaces as the table task sees them: attaching to those that match,
//! retrying attaches that failed, detaching on rename or removal, and the stats file.

use tracing::{info, warn};

use super::{DEPARTED_NAMES, NodeState};
use crate::datapath::LinkEvent;

impl NodeState {
    /// Writes the stats file; a failure is warned about once per run of failures (a poll
    /// every 100 ms would otherwise flood the log), and the recovery is logged.
    pub(super) fn write_stats_file(&mut self, path: &std::path::Path) {
        match self.stats.write(path) {
            Ok(()) if self.stats_file_failing => {
                self.stats_file_failing = false;
                info!(path = %path.display(), "the stats file is written again");
            }
            Ok(()) => {}
            Err(e) if !self.stats_file_failing => {
                self.stats_file_failing = true;
                warn!(
                    error = format!("{e:#}"),
                    "writing the stats file failed; retrying at every poll"
                );
            }
            Err(_) => {}
        }
    }

    /// Tries again the attaches that failed.
    pub(super) fn retry_attach(&mut self) {
        let pending: Vec<(u32, String)> = self
            .pending_attach
            .iter()
            .map(|(index, name)| (*index, name.clone()))
            .collect();
        for (index, name) in pending {
            self.stats.attach_retries += 1;
            self.on_link(LinkEvent::Present { index, name });
        }
    }

    pub(super) fn on_link(&mut self, link: LinkEvent) {
        match link {
            LinkEvent::Present { index, name } => {
                if self.pattern.matches(&name) {
                    match self.attachments.attach(index, &name) {
                        Ok(()) => {
                            if self.pending_attach.remove(&index).is_some() {
                                info!(interface = %name, index, "attached on a retry");
                            }
                            if self.names.get(&index) != Some(&name) {
                                info!(interface = %name, index, "attached");
                                let others = self.attachments.other_observers(&name);
                                if !others.is_empty() {
                                    self.stats.other_observer_interfaces += 1;
                                    warn!(
                                        interface = %name,
                                        programs = ?others,
                                        "another observer's programs are attached here too: \
                                         every packet is counted by both and costs twice"
                                    );
                                }
                            }
                            self.names.insert(index, name);
                        }
                        Err(e) => {
                            self.stats.attach_failures += 1;
                            // Retried at every poll until it works or the interface goes
                            // (out of file descriptors, say, the next try may succeed);
                            // warned once per interface.
                            if self.pending_attach.insert(index, name.clone()).is_none() {
                                warn!(interface = %name, index, error = format!("{e:#}"), "attach failed; retrying at every poll");
                            }
                        }
                    }
                } else if let Some(old) = self.attachments.detach(index) {
                    info!(interface = %old, renamed = %name, index, "detached: no longer matches");
                }
            }
            LinkEvent::Gone { index } => {
                self.pending_attach.remove(&index);
                if let Some(name) = self.attachments.detach(index) {
                    info!(interface = %name, index, "interface gone, detached");
                    self.departed.push_back(index);
                    while self.departed.len() > DEPARTED_NAMES {
                        if let Some(old) = self.departed.pop_front()
                            && !self.attachments.is_attached(old)
                        {
                            self.names.remove(&old);
                        }
                    }
                }
            }
        }
    }
}
