//! Attaching the classifiers to interfaces, and detaching them when interfaces vanish.

use std::collections::HashMap;

use anyhow::{Context, Result};
use aya::{
    Ebpf,
    maps::{HashMap as BpfHashMap, MapData},
    programs::{
        SchedClassifier, TcAttachType, TestRun, TestRunOptions,
        tc::{self, SchedClassifierLinkId},
    },
    util::KernelVersion,
};
use observer_common::{
    ATTACHED_MAP, COUNT_ONE_PROGRAM, COUNT_SLOT_PROGRAM, EGRESS_PROGRAM, EMPTY_PROGRAM,
    INGRESS_PROGRAM, PARSE_ONLY_PROGRAM,
};

/// The benchmarks' reference programs, attached beside the flow programs with
/// `--attach-empty-program`: the ladder from the empty classifier up to the least a
/// per-flow counter does (`xtask/src/bench/cost.rs`).
const REFERENCE_PROGRAMS: [&str; 4] = [
    EMPTY_PROGRAM,
    PARSE_ONLY_PROGRAM,
    COUNT_ONE_PROGRAM,
    COUNT_SLOT_PROGRAM,
];

/// What goes at each hook of an attached interface.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum HookPlan {
    /// The flow programs: the daemon's own.
    #[default]
    FlowPrograms,
    /// Benchmarking aid (`--attach-empty-program`): the flow programs and every reference
    /// program, the references after them, or before them with `references_first` (a
    /// program runs on warmer caches when another ran before it at the hook).
    WithReferences {
        /// The references go first.
        references_first: bool,
    },
    /// Benchmarking aid (`--attach-only`): only these reference programs, in this order,
    /// instead of the flow programs.
    ReferencesOnly(Vec<&'static str>),
}

impl HookPlan {
    /// True when the reference programs are loaded (and their maps sized for use).
    pub fn loads_references(&self) -> bool {
        *self != Self::FlowPrograms
    }
}

/// One attached program: which, where.
struct Link {
    program: &'static str,
    id: SchedClassifierLinkId,
}

/// The loaded programs and the interfaces they are attached to.
pub struct Attachments {
    ebpf: Ebpf,
    /// Kernels before 6.6 have no TCX: programs go through a clsact qdisc and netlink.
    legacy_tc: bool,
    plan: HookPlan,
    attached: HashMap<u32, (String, Vec<Link>)>,
    /// The kernel's copy of the attached interface indexes: its programs count a loss at
    /// an egress hook only for packets that did not enter through one of them.
    attached_map: BpfHashMap<MapData, u32, u8>,
}

impl Attachments {
    pub(super) fn new(mut ebpf: Ebpf, plan: HookPlan) -> Result<Self> {
        let mut names = vec![INGRESS_PROGRAM, EGRESS_PROGRAM];
        if plan.loads_references() {
            names.extend(REFERENCE_PROGRAMS);
        }
        for name in names {
            program(&mut ebpf, name)?
                .load()
                .with_context(|| format!("the kernel verifier rejected program {name}"))?;
        }
        let legacy_tc = !KernelVersion::current().is_ok_and(|v| v >= KernelVersion::new(6, 6, 0));
        let attached_map = ebpf
            .take_map(ATTACHED_MAP)
            .with_context(|| format!("map {ATTACHED_MAP} missing from the eBPF object"))?;
        Ok(Self {
            ebpf,
            legacy_tc,
            plan,
            attached: HashMap::new(),
            attached_map: BpfHashMap::try_from(attached_map)?,
        })
    }

    /// Names of the interfaces currently attached, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.attached.values().map(|(n, _)| n.clone()).collect();
        names.sort();
        names
    }

    /// True when the interface is attached.
    pub fn is_attached(&self, index: u32) -> bool {
        self.attached.contains_key(&index)
    }

    /// Attaches the flow programs at ingress and egress of `name` (interface `index`).
    pub fn attach(&mut self, index: u32, name: &str) -> Result<()> {
        if self.attached.get(&index).is_some_and(|(n, _)| n == name) {
            return Ok(());
        }
        // A reused index with a new name is a new interface: drop what was there.
        self.detach(index);
        if self.legacy_tc {
            // Already present is fine; any other failure shows up in attach below.
            let _ = tc::qdisc_add_clsact(name);
        }
        let at_both = |programs: &[&'static str]| -> Vec<(&'static str, TcAttachType)> {
            programs
                .iter()
                .flat_map(|&p| [(p, TcAttachType::Ingress), (p, TcAttachType::Egress)])
                .collect()
        };
        let flow = vec![
            (INGRESS_PROGRAM, TcAttachType::Ingress),
            (EGRESS_PROGRAM, TcAttachType::Egress),
        ];
        let plan = match &self.plan {
            HookPlan::FlowPrograms => flow,
            HookPlan::WithReferences { references_first } => {
                let references = at_both(&REFERENCE_PROGRAMS);
                if *references_first {
                    [references, flow].concat()
                } else {
                    [flow, references].concat()
                }
            }
            HookPlan::ReferencesOnly(programs) => at_both(programs),
        };
        let mut links = Vec::new();
        for (program_name, hook) in plan {
            let attached = program(&mut self.ebpf, program_name)
                .and_then(|p| Ok(p.attach(name, hook)?))
                .with_context(|| {
                    let how = if self.legacy_tc {
                        "netlink clsact"
                    } else {
                        "TCX"
                    };
                    format!("attaching {program_name} to {name} {hook:?} via {how}")
                });
            match attached {
                Ok(id) => links.push(Link {
                    program: program_name,
                    id,
                }),
                Err(e) => {
                    self.release(links);
                    return Err(e);
                }
            }
        }
        if let Err(e) = self.attached_map.insert(index, 1, 0) {
            // Only the loss counters' deduplication depends on it: losses of packets
            // from this interface to another local pod may then be counted twice.
            tracing::warn!(interface = name, error = %e, "recording the attached interface in the kernel");
        }
        self.attached.insert(index, (name.to_string(), links));
        Ok(())
    }

    /// Detaches from interface `index` if attached (also after the interface vanished:
    /// closing the links frees them).
    pub fn detach(&mut self, index: u32) -> Option<String> {
        let (name, links) = self.attached.remove(&index)?;
        self.release(links);
        // Absent already is fine: the entry only matters while the interface is attached.
        let _ = self.attached_map.remove(&index);
        Some(name)
    }

    /// Detaches from every interface, returning their names, sorted.
    pub fn detach_all(&mut self) -> Vec<String> {
        let indexes: Vec<u32> = self.attached.keys().copied().collect();
        let mut names: Vec<String> = indexes.into_iter().filter_map(|i| self.detach(i)).collect();
        names.sort();
        names
    }

    /// Other observers' programs at the hooks of interface `name`: programs named like
    /// ours that are not ours (another observer attached to the same interfaces counts
    /// every packet again and doubles the per-packet cost). Only TCX links can be listed;
    /// on older kernels this finds nothing.
    pub fn other_observers(&mut self, name: &str) -> Vec<u32> {
        if self.legacy_tc {
            return Vec::new();
        }
        let mut ours = Vec::new();
        for program_name in [INGRESS_PROGRAM, EGRESS_PROGRAM]
            .into_iter()
            .chain(REFERENCE_PROGRAMS)
        {
            if let Ok(info) = program(&mut self.ebpf, program_name).and_then(|p| Ok(p.info()?)) {
                ours.push((info.id(), info.name_as_str().map(str::to_owned)));
            }
        }
        let mut others = Vec::new();
        for hook in [TcAttachType::Ingress, TcAttachType::Egress] {
            let Ok((_, attached)) = SchedClassifier::query_tcx(name, hook) else {
                continue;
            };
            for info in attached {
                let same_name = ours
                    .iter()
                    .any(|(_, n)| n.is_some() && n.as_deref() == info.name_as_str());
                let ours_too = ours.iter().any(|(id, _)| *id == info.id());
                if same_name && !ours_too && !others.contains(&info.id()) {
                    others.push(info.id());
                }
            }
        }
        others
    }

    /// Runs the loaded classifier `name` once on `frame` through BPF_PROG_TEST_RUN, as
    /// if the frame had reached its hook on the loopback interface, without attaching it:
    /// the tier of exact parser tests that needs no namespaces. `gso_segs` above 1 makes
    /// the frame a GSO packet of that many segments.
    pub fn run_on_frame(&mut self, name: &str, frame: &[u8], gso_segs: u32) -> Result<()> {
        // `struct __sk_buff` (UAPI, 192 bytes): the kernel copies in the GSO fields and
        // requires the ones it does not accept to be zero.
        const SK_BUFF_LEN: usize = 192;
        const GSO_SEGS_OFFSET: usize = 164;
        const GSO_SIZE_OFFSET: usize = 176;
        let mut context = [0u8; SK_BUFF_LEN];
        if gso_segs > 1 {
            let segment = u32::try_from(frame.len()).unwrap_or(u32::MAX) / gso_segs;
            context[GSO_SEGS_OFFSET..GSO_SEGS_OFFSET + 4].copy_from_slice(&gso_segs.to_ne_bytes());
            context[GSO_SIZE_OFFSET..GSO_SIZE_OFFSET + 4]
                .copy_from_slice(&segment.max(1).to_ne_bytes());
        }
        program(&mut self.ebpf, name)?
            .test_run(TestRunOptions {
                data_in: Some(frame),
                ctx_in: Some(&context),
                repeat: 1,
                ..Default::default()
            })
            .with_context(|| format!("test run of {name} on a {}-byte frame", frame.len()))?;
        Ok(())
    }

    fn release(&mut self, links: Vec<Link>) {
        for link in links {
            if let Ok(p) = program(&mut self.ebpf, link.program)
                && let Err(e) = p.detach(link.id)
            {
                // The interface may be gone already (the link is released either way).
                tracing::debug!(program = link.program, error = %e, "detach");
            }
        }
    }
}

/// The classifier `name` of the eBPF object.
pub(super) fn program<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut SchedClassifier> {
    let program = ebpf
        .program_mut(name)
        .with_context(|| format!("program {name} missing from the eBPF object"))?;
    Ok(program.try_into()?)
}
