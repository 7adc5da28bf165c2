//! Unit and property tests of the eviction policy.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use proptest::prelude::*;

use super::*;

/// Carries out steps the way the store does.
fn apply(p: &mut Policy, steps: &[Step]) {
    for s in steps {
        match *s {
            Step::ShrinkRecycled(n) => {
                let left = p.recycled().saturating_sub(n);
                p.set_recycled(left);
            }
            Step::Evict(id) => p.evicted(id),
            Step::Spill(id) => p.spilled_one(id),
        }
    }
}

fn create(p: &mut Policy, id: Id, size: u64, primary: bool) -> Result<Vec<Step>, NoRoom> {
    let steps = p.make_room(size)?;
    apply(p, &steps);
    p.insert(id, size, primary);
    Ok(steps)
}

#[test]
fn evicts_lru_secondary_before_spilling_primary() {
    let mut p = Policy::new(100);
    create(&mut p, 1, 40, false).unwrap();
    create(&mut p, 2, 40, false).unwrap();
    p.seal(1);
    p.seal(2);
    p.pin(1);
    p.unpin(1); // 1 is now more recent than 2
    let steps = create(&mut p, 3, 40, true).unwrap();
    assert_eq!(steps, vec![Step::Evict(2)]);
    p.seal(3);
    // 1 secondary (evict first), then 3 primary (spill).
    let steps = p.make_room(100).unwrap();
    assert_eq!(steps, vec![Step::Evict(1), Step::Spill(3)]);
    p.check().unwrap();
}

#[test]
fn pinned_and_unsealed_are_never_victims() {
    let mut p = Policy::new(100);
    create(&mut p, 1, 50, false).unwrap();
    create(&mut p, 2, 50, false).unwrap();
    p.seal(2);
    p.pin(2);
    match p.make_room(10) {
        Err(NoRoom::Full {
            requested: 10,
            capacity: 100,
            used: 100,
            pinned: 100,
        }) => {}
        other => panic!("{other:?}"),
    }
    assert!(matches!(p.make_room(101), Err(NoRoom::TooLarge { .. })));
    p.unpin(2);
    assert_eq!(p.make_room(10).unwrap(), vec![Step::Evict(2)]);
}

#[test]
fn delete_while_pinned_is_deferred() {
    let mut p = Policy::new(100);
    create(&mut p, 1, 30, true).unwrap();
    p.seal(1);
    p.pin(1);
    assert_eq!(p.remove(1), Removal::Deferred);
    assert_eq!(p.used(), 30);
    assert!(p.make_room(71).is_err());
    assert_eq!(p.unpin(1), Some(Residence::Resident));
    assert_eq!(p.used(), 0);
    assert_eq!(p.remove(1), Removal::Missing);
    p.check().unwrap();
}

#[test]
fn spilled_restore_and_recycled_bytes() {
    let mut p = Policy::new(100);
    create(&mut p, 1, 60, true).unwrap();
    p.seal(1);
    p.set_recycled(30);
    let steps = create(&mut p, 2, 60, false).unwrap();
    assert_eq!(steps, vec![Step::ShrinkRecycled(30), Step::Spill(1)]);
    assert_eq!(p.spilled(), (1, 60));
    assert_eq!(p.residence(1), Some(Residence::Spilled));
    p.seal(2);
    let steps = p.make_room(60).unwrap();
    assert_eq!(steps, vec![Step::Evict(2)]);
    apply(&mut p, &steps);
    p.restored(1);
    assert_eq!(p.residence(1), Some(Residence::Resident));
    assert_eq!(p.remove(1), Removal::Freed(Residence::Resident));
    p.check().unwrap();
}

#[derive(Clone, Debug)]
enum Op {
    Create { size: u64, primary: bool },
    Seal(usize),
    Pin(usize),
    Unpin(usize),
    SetPrimary(usize, bool),
    Delete(usize),
    Get(usize),
    Recycle(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1u64..400, any::<bool>()).prop_map(|(size, primary)| Op::Create { size, primary }),
        3 => (0usize..64).prop_map(Op::Seal),
        2 => (0usize..64).prop_map(Op::Pin),
        2 => (0usize..64).prop_map(Op::Unpin),
        1 => (0usize..64, any::<bool>()).prop_map(|(i, b)| Op::SetPrimary(i, b)),
        1 => (0usize..64).prop_map(Op::Delete),
        2 => (0usize..64).prop_map(Op::Get),
        1 => (0u64..200).prop_map(Op::Recycle),
    ]
}

/// What the test knows of an object, beside the policy.
#[derive(Debug)]
struct Known {
    sealed: bool,
    deleted: bool,
    pins: u32,
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn invariants_hold(ops in proptest::collection::vec(op(), 1..120)) {
        const CAP: u64 = 1000;
        let mut p = Policy::new(CAP);
        let mut known: HashMap<Id, Known> = HashMap::new();
        let mut next: Id = 0;
        let pick = |known: &HashMap<Id, Known>, i: usize| -> Option<Id> {
            if known.is_empty() { return None; }
            let mut ids: Vec<Id> = known.keys().copied().collect();
            ids.sort_unstable();
            Some(ids[i % ids.len()])
        };
        for op in ops {
            match op {
                Op::Create { size, primary } => {
                    let before_pinned = p.pinned_bytes();
                    match p.make_room(size) {
                        Ok(steps) => {
                            for s in &steps {
                                if let Step::Evict(id) | Step::Spill(id) = *s {
                                    let k = &known[&id];
                                    prop_assert!(k.sealed && !k.deleted && k.pins == 0,
                                        "victim {id} not evictable: {k:?}");
                                    prop_assert_eq!(p.residence(id), Some(Residence::Resident));
                                }
                                if let Step::Evict(id) = *s {
                                    known.get_mut(&id).unwrap().deleted = true;
                                }
                            }
                            apply(&mut p, &steps);
                            p.insert(next, size, primary);
                            known.insert(next, Known { sealed: false, deleted: false, pins: 0 });
                            next += 1;
                        }
                        Err(NoRoom::TooLarge { .. }) => prop_assert!(size > CAP),
                        Err(NoRoom::Full { pinned, .. }) => {
                            prop_assert_eq!(pinned, before_pinned);
                            prop_assert!(p.recycled() + p.used() + size > CAP);
                        }
                    }
                }
                Op::Seal(i) => if let Some(id) = pick(&known, i) {
                    let k = known.get_mut(&id).unwrap();
                    let ok = p.seal(id);
                    prop_assert_eq!(ok, !k.sealed && !k.deleted);
                    if ok { k.sealed = true; }
                },
                Op::Pin(i) | Op::Get(i) => if let Some(id) = pick(&known, i) {
                    if p.residence(id) == Some(Residence::Spilled) {
                        if let Ok(steps) = p.make_room(p.size(id).unwrap()) {
                            for s in &steps {
                                if let Step::Evict(v) = *s {
                                    known.get_mut(&v).unwrap().deleted = true;
                                }
                            }
                            apply(&mut p, &steps);
                            p.restored(id);
                        }
                    }
                    let k = known.get_mut(&id).unwrap();
                    let resident = p.residence(id) == Some(Residence::Resident);
                    let live = !k.deleted && k.sealed;
                    let pinned = p.pin(id);
                    if pinned { k.pins += 1; }
                    prop_assert_eq!(pinned, live && resident);
                },
                Op::Unpin(i) => if let Some(id) = pick(&known, i) {
                    let k = known.get_mut(&id).unwrap();
                    if k.pins > 0 {
                        k.pins -= 1;
                        p.unpin(id);
                    }
                },
                Op::SetPrimary(i, b) => if let Some(id) = pick(&known, i) {
                    p.set_primary(id, b);
                },
                Op::Delete(i) => if let Some(id) = pick(&known, i) {
                    let k = known.get_mut(&id).unwrap();
                    let r = p.remove(id);
                    if k.deleted {
                        prop_assert!(r == Removal::Missing || (r == Removal::Deferred && k.pins > 0));
                    }
                    k.deleted = true;
                },
                Op::Recycle(n) => {
                    let room = CAP - p.used();
                    p.set_recycled(n.min(room));
                }
            }
            p.check().map_err(TestCaseError::fail)?;
            prop_assert!(p.used() + p.recycled() <= CAP);
            // Every sealed object is resident, spilled, or deleted; a pinned
            // one is resident.
            for (id, k) in &known {
                let r = p.residence(*id);
                if k.sealed && !k.deleted {
                    prop_assert!(matches!(r, Some(Residence::Resident | Residence::Spilled)));
                }
                if k.pins > 0 {
                    prop_assert_eq!(r, Some(Residence::Resident));
                    prop_assert_eq!(p.pins(*id), k.pins);
                }
                if k.deleted && k.pins == 0 {
                    prop_assert_eq!(r, None);
                }
            }
        }
    }
}
