//! Round trips of every frame, and the codec's refusals of bad input.

use super::*;
use proptest::prelude::*;
use proptest::strategy::ValueTree;

fn object_id() -> impl Strategy<Value = ObjectId> {
    any::<[u8; 20]>().prop_map(ObjectId)
}

fn spec() -> impl Strategy<Value = TaskSpec> {
    (
        any::<[u8; 16]>(),
        proptest::collection::vec(
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..64).prop_map(Arg::Value),
                object_id().prop_map(Arg::Ref),
            ],
            0..6,
        ),
        0u32..5,
        proptest::collection::vec(object_id(), 0..3),
        any::<bool>(),
        scheduling_strategy(),
        any::<Generator>(),
    )
        .prop_map(
            |(task, args, num_returns, nested_refs, actor, strategy, generator)| TaskSpec {
                task_id: TaskId(task),
                function: FunctionId([1; 16]),
                name: "f".into(),
                args,
                kwargs: vec![],
                num_returns,
                resources: Resources(vec![("CPU".into(), 1.0)]),
                max_retries: 3,
                retry_exceptions: false,
                nested_refs,
                kind: if actor {
                    TaskKind::ActorMethod {
                        actor: ActorId(task),
                        method: "m".into(),
                    }
                } else {
                    TaskKind::Normal
                },
                strategy,
                generator,
            },
        )
}

fn scheduling_strategy() -> impl Strategy<Value = SchedulingStrategy> {
    prop_oneof![
        Just(SchedulingStrategy::Default),
        Just(SchedulingStrategy::Spread),
        (any::<[u8; 16]>(), any::<bool>()).prop_map(|(node, soft)| {
            SchedulingStrategy::NodeAffinity {
                node: NodeId(node),
                soft,
            }
        }),
        (
            any::<[u8; 16]>(),
            proptest::option::of(0u32..1024),
            any::<bool>()
        )
            .prop_map(|(group, bundle, capture_child_tasks)| {
                SchedulingStrategy::PlacementGroup {
                    group: PlacementGroupId(group),
                    bundle,
                    capture_child_tasks,
                }
            }),
    ]
}

fn group_spec() -> impl Strategy<Value = PlacementGroupSpec> {
    (
        any::<[u8; 16]>(),
        proptest::option::of("[a-z]{0,8}"),
        proptest::collection::vec(0.0f64..8.0, 1..5),
        0usize..4,
        any::<bool>(),
    )
        .prop_map(|(id, name, cpus, strategy, detached)| PlacementGroupSpec {
            id: PlacementGroupId(id),
            name,
            namespace: "default".into(),
            bundles: cpus
                .into_iter()
                .map(|c| Resources(vec![("CPU".into(), c)]))
                .collect(),
            strategy: [
                GroupStrategy::Pack,
                GroupStrategy::Spread,
                GroupStrategy::StrictPack,
                GroupStrategy::StrictSpread,
            ][strategy],
            detached,
        })
}

pub(crate) fn byte_bufs() -> impl Strategy<Value = Vec<serde_bytes::ByteBuf>> {
    proptest::collection::vec(
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(serde_bytes::ByteBuf::from),
        0..4,
    )
}

/// Finite amounts only: NaN is refused by validation and equals nothing.
pub(crate) fn resource_list() -> impl Strategy<Value = Vec<(String, f64)>> {
    proptest::collection::vec((".{0,8}", 0.0..1e6f64), 0..4)
}

fn to_node() -> impl Strategy<Value = ToNode> {
    prop_oneof![
        spec().prop_map(ToNode::Submit),
        (object_id(), proptest::collection::vec(any::<u8>(), 0..128)).prop_map(|(id, bytes)| {
            ToNode::Put {
                id,
                bytes,
                nested: vec![],
            }
        }),
        (
            any::<u64>(),
            proptest::collection::vec(object_id(), 0..8),
            any::<Option<u64>>()
        )
            .prop_map(|(req, ids, timeout_ms)| ToNode::Get {
                req,
                ids,
                timeout_ms
            }),
        (
            proptest::collection::vec(object_id(), 0..8),
            proptest::collection::vec(object_id(), 0..8)
        )
            .prop_map(|(add, remove)| ToNode::Refs { add, remove }),
        (any::<u64>(), group_spec())
            .prop_map(|(req, group)| ToNode::CreatePlacementGroup { req, group }),
        (any::<u64>(), any::<[u8; 16]>()).prop_map(|(req, id)| ToNode::RemovePlacementGroup {
            req,
            id: PlacementGroupId(id)
        }),
    ]
}

fn from_node() -> impl Strategy<Value = FromNode> {
    prop_oneof![
        (
            any::<u64>(),
            proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..4)
        )
            .prop_map(|(req, vs)| FromNode::Got {
                req,
                values: Some(vs.into_iter().map(Value::Inline).collect())
            }),
        (
            any::<u64>(),
            proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..4)
        )
            .prop_map(|(req, vs)| FromNode::GotPart {
                req,
                values: vs.into_iter().map(Value::Inline).collect()
            }),
        (any::<u64>(), proptest::collection::vec(any::<u32>(), 0..8))
            .prop_map(|(req, ready)| FromNode::Waited { req, ready }),
        spec().prop_map(|spec| FromNode::Execute(Box::new(Execute {
            spec,
            job: JobId(1),
            function_body: Some(vec![1, 2, 3]),
            args: vec![Value::Store {
                path: "/dev/shm/x".into(),
                size: 9,
                id: ObjectId([4; 20]),
            }],
            attempt: 0,
            gpu_ids: vec![0, 1],
        }))),
    ]
}

fn round_trip<T>(msg: &T) -> T
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    let bytes = frame::encode(msg).expect("encodes");
    let header = [bytes[0], bytes[1], bytes[2], bytes[3]];
    let len = frame::body_len(header).expect("bounded");
    assert_eq!(len, bytes.len() - frame::HEADER_BYTES);
    frame::decode(&bytes[frame::HEADER_BYTES..]).expect("decodes")
}

proptest! {
    #[test]
    fn to_node_round_trips(msg in to_node()) {
        prop_assert_eq!(round_trip(&msg), msg);
    }

    #[test]
    fn from_node_round_trips(msg in from_node()) {
        prop_assert_eq!(round_trip(&msg), msg);
    }

    #[test]
    fn garbage_never_panics(body in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = frame::decode::<ToNode>(&body);
        let _ = frame::decode::<FromNode>(&body);
    }
}

#[test]
fn oversized_header_is_refused() {
    let header = ((MAX_FRAME_BYTES + 1) as u32).to_le_bytes();
    assert!(matches!(
        frame::body_len(header),
        Err(FrameError::TooLarge { .. })
    ));
}

#[test]
fn truncated_body_is_malformed() {
    let bytes = frame::encode(&ToNode::Get {
        req: 1,
        ids: vec![ObjectId([3; 20])],
        timeout_ms: None,
    })
    .expect("encodes");
    let body = &bytes[frame::HEADER_BYTES..bytes.len() - 3];
    assert!(matches!(
        frame::decode::<ToNode>(body),
        Err(FrameError::Malformed(_))
    ));
}

#[test]
fn a_put_frame_reads_in_place_as_a_put_view() {
    use crate::msg::PutView;
    let id = ObjectId([7; 20]);
    let nested = vec![ObjectId([9; 20])];
    let put = ToNode::Put {
        id,
        bytes: vec![1, 2, 3, 4, 5],
        nested: nested.clone(),
    };
    let body = postcard::to_allocvec(&put).expect("encodes");
    let view = PutView::of(&body).expect("a put frame");
    assert_eq!(
        (view.id, view.bytes, view.nested),
        (id, &[1u8, 2, 3, 4, 5][..], nested)
    );
    let other = postcard::to_allocvec(&ToNode::Refs {
        add: vec![],
        remove: vec![],
    })
    .expect("encodes");
    assert!(PutView::of(&other).is_none());
}

proptest! {
    #[test]
    fn a_put_framed_in_place_is_the_put_frame(
        id in any::<[u8; 20]>(),
        bytes in proptest::collection::vec(any::<u8>(), 0..2000),
        nested in proptest::collection::vec(any::<[u8; 20]>(), 0..4),
    ) {
        let nested: Vec<ObjectId> = nested.into_iter().map(ObjectId).collect();
        let expected = frame::encode(&ToNode::Put {
            id: ObjectId(id),
            bytes: bytes.clone(),
            nested: nested.clone(),
        })
        .expect("encodes");
        let mut out = vec![9, 9];
        let filled = frame::encode_put_into(&mut out, ObjectId(id), bytes.len(), &nested, |dst| {
            dst.copy_from_slice(&bytes);
            Ok::<(), ()>(())
        })
        .expect("encodes");
        prop_assert!(filled.is_ok());
        prop_assert_eq!(&out[..2], &[9u8, 9][..]);
        prop_assert_eq!(&out[2..], &expected[..]);
    }
}

proptest! {
    #[test]
    fn specs_from_honest_clients_pass_validation(spec in spec()) {
        prop_assert_eq!(spec.validate(), Ok(()));
    }

    #[test]
    fn any_amount_that_is_not_finite_and_non_negative_is_refused(
        spec in spec(),
        bad in prop_oneof![Just(f64::NAN), Just(f64::INFINITY), Just(f64::NEG_INFINITY), -1e300..-1e-300],
    ) {
        let mut spec = spec;
        spec.resources.set("CPU", bad);
        let refused = matches!(spec.validate(), Err(SpecError::Resource { .. }));
        prop_assert!(refused);
    }
}

#[test]
fn oversized_counts_and_names_are_refused() {
    let base = spec()
        .new_tree(&mut proptest::test_runner::TestRunner::deterministic())
        .expect("a spec")
        .current();
    let mut many = base.clone();
    many.num_returns = task::MAX_RETURNS + 1;
    assert_eq!(
        many.validate(),
        Err(SpecError::TooManyReturns(task::MAX_RETURNS + 1))
    );
    let mut long = base.clone();
    long.name = "x".repeat(task::MAX_NAME_BYTES + 1);
    assert!(matches!(long.validate(), Err(SpecError::NameTooLong(_))));
    let mut kinds = base;
    for i in 0..=task::MAX_RESOURCE_KINDS {
        kinds.resources.set(&format!("r{i}"), 1.0);
    }
    assert!(matches!(
        kinds.validate(),
        Err(SpecError::TooManyResources { .. })
    ));
}

/// A peer message through its codec.
fn peer_round_trip<T>(msg: &T) -> T
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    peer::decode(&peer::encode(msg)).expect("decodes")
}

proptest! {
    #[test]
    fn every_to_node_variant_round_trips(msg in any::<ToNode>()) {
        prop_assert_eq!(round_trip(&msg), msg);
    }

    #[test]
    fn every_from_node_variant_round_trips(msg in any::<FromNode>()) {
        prop_assert_eq!(round_trip(&msg), msg);
    }

    #[test]
    fn every_peer_message_round_trips(msg in any::<peer::PeerMsg>()) {
        prop_assert_eq!(peer_round_trip(&msg), msg);
    }

    #[test]
    fn every_peer_request_round_trips(msg in any::<peer::PeerRequest>()) {
        prop_assert_eq!(peer_round_trip(&msg), msg);
    }

    #[test]
    fn load_reports_and_pull_requests_round_trip(
        load in any::<peer::Load>(),
        pull in any::<peer::PullRequest>(),
    ) {
        prop_assert_eq!(peer_round_trip(&load), load);
        prop_assert_eq!(peer_round_trip(&pull), pull);
    }
}
