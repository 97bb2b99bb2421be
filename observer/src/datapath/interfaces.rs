//! Which interfaces are pod interfaces: a comma-separated list of glob patterns.

/// Host-side interface names of common CNIs: plain veth (bridge, kindnet, flannel), Calico
/// (`cali`), Cilium (`lxc`), AWS VPC CNI (`eni`), GKE (`gke`), Azure (`azv`), Weave
/// (`vethwe`), Antrea/OVN (`antrea`, `ovn`), Kube-OVN (`_h` suffix), Canal/Flannel (`cni`).
pub const DEFAULT_INTERFACE_PATTERN: &str =
    "veth*,cali*,lxc*,eni*,gke*,azv*,vethwe*,antrea-*,ovn-*,*_h,cni*";

/// A set of glob patterns (`*` any run, `?` one character) matched against whole names.
#[derive(Clone, Debug)]
pub struct InterfacePattern {
    globs: Vec<String>,
}

impl InterfacePattern {
    /// Parses `glob[,glob...]`; empty entries are ignored.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let globs: Vec<String> = spec
            .split(',')
            .map(str::trim)
            .filter(|g| !g.is_empty())
            .map(str::to_string)
            .collect();
        if globs.is_empty() {
            return Err(format!("interface pattern {spec:?} has no glob in it"));
        }
        Ok(Self { globs })
    }

    /// True when any glob matches the whole name.
    pub fn matches(&self, name: &str) -> bool {
        self.globs
            .iter()
            .any(|g| glob_match(g.as_bytes(), name.as_bytes()))
    }
}

fn glob_match(pattern: &[u8], name: &[u8]) -> bool {
    // Iterative matcher with single-star backtracking: linear in practice, no recursion.
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == name[n]) {
            p += 1;
            n += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, n));
            p += 1;
        } else if let Some((sp, sn)) = star {
            p = sp + 1;
            n = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_pattern_covers_common_cnis_and_not_the_uplink() {
        let p = InterfacePattern::parse(DEFAULT_INTERFACE_PATTERN).unwrap();
        for name in [
            "veth1a2b",
            "cali12345",
            "lxc9f",
            "eni0a",
            "gke3",
            "azv1",
            "abc_h",
        ] {
            assert!(p.matches(name), "{name}");
        }
        for name in ["eth0", "lo", "uplink0", "docker0", "cilium_host", "ve"] {
            assert!(!p.matches(name), "{name}");
        }
    }

    #[test]
    fn globs_match_whole_names() {
        let p = InterfacePattern::parse("a*b?c, x").unwrap();
        assert!(p.matches("ab1c"));
        assert!(p.matches("a123b1c"));
        assert!(!p.matches("ab1cd"));
        assert!(p.matches("x"));
        assert!(!p.matches("xx"));
        assert!(InterfacePattern::parse(" , ").is_err());
    }
}
