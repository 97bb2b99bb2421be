//! Property tests of the suggestions: for random clusters and random observed traffic,
//! the generated policies (read back through the manifest loader) allow every observed
//! flow; the output does not depend on the records' order; merging two learners equals
//! learning from both sets of records.

use std::net::IpAddr;

use observer::cli::suggest::{as_calico, suggest_offline, suggest_offline_with};
use observer::cluster::manifests;
use observer::flow::{FlowRecord, FlowState, IcmpInfo, IpProtocol, RecordEndpoint, Timestamp};
use observer::suggest::calico::CalicoPlacement;
use observer::suggest::generate::{GenerateConfig, Granularity};
use observer::suggest::learn::{LearnConfig, Learner};
use proptest::prelude::*;

/// A pod of the random cluster: (namespace index, workload index, pod index).
#[derive(Clone, Copy, Debug)]
struct PodRef(usize, usize, usize);

const NAMESPACES: [&str; 3] = ["a", "b", "c"];

impl PodRef {
    fn name(self) -> String {
        format!("w{}-{}", self.1, self.2)
    }
    fn ip(self) -> IpAddr {
        IpAddr::from([10, self.0 as u8, self.1 as u8, self.2 as u8 + 1])
    }
    fn manifest(self) -> String {
        let PodRef(ns, w, p) = self;
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {}\n  namespace: {}\n  \
             labels: {{app: w{w}, pod-template-hash: h{p}}}\n  \
             ownerReferences: [{{apiVersion: apps/v1, kind: ReplicaSet, name: w{w}-rs, uid: rs-{ns}-{w}, controller: true}}]\n\
             status: {{podIP: {}}}\n---\n",
            self.name(),
            NAMESPACES[ns],
            self.ip()
        )
    }
    fn end(self, port: u16) -> RecordEndpoint {
        let mut end = RecordEndpoint {
            ip: self.ip(),
            port,
            identity: Default::default(),
        };
        let id = &mut end.identity;
        id.namespace = Some(NAMESPACES[self.0].to_string());
        id.pod = Some(self.name());
        id.labels = Some(
            [
                ("app".to_string(), format!("w{}", self.1)),
                ("pod-template-hash".to_string(), format!("h{}", self.2)),
            ]
            .into(),
        );
        id.workload = Some(observer_api::record::WorkloadInfo {
            kind: "ReplicaSet".into(),
            name: format!("w{}-rs", self.1),
        });
        end
    }
}

/// Every namespace has workloads w0..w2 with pods 0..1.
fn pods() -> Vec<PodRef> {
    let mut out = Vec::new();
    for ns in 0..3 {
        for w in 0..3 {
            for p in 0..2 {
                out.push(PodRef(ns, w, p));
            }
        }
    }
    out
}

fn cluster() -> String {
    let mut text: String = NAMESPACES
        .iter()
        .map(|ns| format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n---\n"))
        .collect();
    for pod in pods() {
        text += &pod.manifest();
    }
    text
}

/// A flow: source pod, destination pod or outside, protocol, port, second.
fn flows() -> impl Strategy<Value = Vec<FlowRecord>> {
    let all = pods();
    let pod = prop::sample::select(all);
    let flow = (
        pod.clone(),
        prop::option::weighted(0.8, pod),
        prop::sample::select(vec![IpProtocol::TCP, IpProtocol::UDP, IpProtocol::ICMP]),
        prop::sample::select(vec![53u16, 80, 443, 5432, 8080, 8081]),
        0i64..600,
        1024u16..65000,
    )
        .prop_map(|(src, dst, protocol, port, second, sport)| {
            let dst = match dst {
                Some(pod) => pod.end(port),
                None => RecordEndpoint {
                    ip: IpAddr::from([93, 184, 216, (port % 200) as u8]),
                    port,
                    identity: Default::default(),
                },
            };
            let mut record = FlowRecord::between(src.end(sport), dst, protocol, FlowState::Closed);
            record.first_seen = Timestamp(second * 1_000_000_000);
            record.last_seen = Timestamp(second * 1_000_000_000 + 500);
            record.fwd.packets = 2;
            record.fwd.bytes = 200;
            if protocol == IpProtocol::ICMP {
                // An echo request, or a timestamp request: two ICMP rules for Calico.
                record.icmp = Some(IcmpInfo {
                    icmp_type: if port % 2 == 0 { 8 } else { 13 },
                    code: 0,
                });
            }
            record
        });
    prop::collection::vec(flow, 1..40)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn the_suggestion_allows_every_observed_flow_whatever_the_order(
        records in flows(),
        seed in any::<u64>(),
    ) {
        let objects = manifests::parse("cluster.yaml", &cluster()).into_objects();
        let report = suggest_offline(&objects, &records, LearnConfig::default())
            .map_err(TestCaseError::fail)?;
        prop_assert!(report.proof.denied.is_empty(), "denied: {:?}", report.proof.denied);
        // NetworkPolicy cannot express ICMP: those records are not judged.
        let with_ports = records.iter().filter(|r| !r.protocol.is_icmp()).count();
        prop_assert_eq!(report.proof.checked, with_ports as u64);
        // The YAML reads back, through the manifest loader, to the objects proven.
        let text: String = report.yaml.values().map(String::as_str).collect();
        let loaded = manifests::parse("suggested.yaml", &text);
        prop_assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        let mut read_back: Vec<_> = loaded.into_objects().policies.iter().map(|p| (**p).clone()).collect();
        let mut proven = report.objects.clone();
        let key = |p: &k8s_openapi::api::networking::v1::NetworkPolicy| (p.metadata.namespace.clone(), p.metadata.name.clone());
        read_back.sort_by_key(key);
        proven.sort_by_key(key);
        prop_assert_eq!(read_back, proven);
        // One policy per namespace allows it all too.
        let per_namespace = suggest_offline_with(
            &objects,
            &records,
            LearnConfig::default(),
            &GenerateConfig { granularity: Granularity::Namespace, ..GenerateConfig::default() },
        )
        .map_err(TestCaseError::fail)?;
        prop_assert!(per_namespace.proof.denied.is_empty(), "denied: {:?}", per_namespace.proof.denied);
        // The Calico format, proven with the tiered engine, allows it all, ICMP included.
        let calico_free_yaml = report.yaml.clone();
        let mut calico = report;
        as_calico(&mut calico, &objects, &records, &CalicoPlacement { order: 1000.0, tier: None })
            .map_err(TestCaseError::fail)?;
        prop_assert!(calico.proof.denied.is_empty(), "denied: {:?}", calico.proof.denied);
        prop_assert_eq!(calico.proof.checked, records.len() as u64);
        // The same records in another order give the same bytes.
        let mut shuffled = records.clone();
        let mut state = seed | 1;
        for i in (1..shuffled.len()).rev() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            shuffled.swap(i, (state % (i as u64 + 1)) as usize);
        }
        let again = suggest_offline(&objects, &shuffled, LearnConfig::default())
            .map_err(TestCaseError::fail)?;
        prop_assert_eq!(&calico_free_yaml, &again.yaml);
    }

    #[test]
    fn merging_two_learners_equals_learning_from_both(
        records in flows(),
        split in 0usize..40,
    ) {
        let split = split.min(records.len());
        let (mut one, mut two, mut both) = (
            Learner::new(LearnConfig::default()),
            Learner::new(LearnConfig::default()),
            Learner::new(LearnConfig::default()),
        );
        for (i, record) in records.iter().enumerate() {
            if i < split { one.learn(record) } else { two.learn(record) }
            both.learn(record);
        }
        one.merge(&two);
        prop_assert_eq!(one.learned().edges(), both.learned().edges());
        prop_assert_eq!(one.learned().workload_labels(), both.learned().workload_labels());
    }
}
