use super::*;
use std::collections::HashSet;
use std::sync::Mutex as StdMutex;

fn table(max_sessions: usize, unused: Duration, idle: Duration) -> SessionTable<Vec<u8>> {
    let config = TableConfig {
        max_sessions,
        idle_expiry: idle,
        unused_expiry: unused,
        owner: 5,
        ..TableConfig::default()
    };
    SessionTable::new(config, Budget::new(1 << 20)).with_weigher(Vec::len)
}

const LONG: Duration = Duration::from_secs(600);

/// A session that completed a request, then lost its connection.
fn used_and_detached(table: &SessionTable<Vec<u8>>) -> u64 {
    let attached = table.create().unwrap();
    attached.retain(&vec![0; 10]);
    attached.id()
}

#[test]
fn ids_are_nonzero_distinct_and_carry_the_owner() {
    let table = table(1000, LONG, LONG);
    // Each id is a keyed hash: a few under Miri, which interprets every step.
    let n = if cfg!(miri) { 100 } else { 1000 };
    let ids: HashSet<u64> = (0..n).map(|_| table.create().unwrap().id()).collect();
    assert_eq!(ids.len(), n);
    assert!(ids.iter().all(|&id| id != 0 && owner_of(id) == 5));
}

#[test]
fn a_full_table_of_connected_sessions_refuses_and_an_ended_session_frees_its_place() {
    let table = table(1, LONG, LONG);
    let held = table.create().unwrap();
    assert_eq!(table.create().unwrap_err(), TableError::Full);
    assert!(table.end(held.id()));
    assert!(!table.end(held.id()));
    assert_eq!(table.attach(held.id()).unwrap_err(), TableError::Unknown);
    assert!(table.create().is_ok());
}

#[test]
fn a_full_table_evicts_the_session_detached_longest_ago() {
    let table = table(3, LONG, LONG);
    let first = used_and_detached(&table);
    std::thread::sleep(Duration::from_millis(3));
    let second = used_and_detached(&table);
    let _held = table.create().unwrap();
    let newcomer = table.create().expect("room made by eviction");
    assert_eq!(table.attach(first).unwrap_err(), TableError::Unknown);
    assert!(table.attach(second).is_ok());
    assert_eq!(table.len(), 3);
    drop(newcomer);
}

#[test]
fn never_used_sessions_expire_first_and_used_ones_after_the_idle_time() {
    let expired = Arc::new(StdMutex::new(Vec::new()));
    let seen = Arc::clone(&expired);
    let table = table(10, Duration::ZERO, LONG).with_observer(move |event| {
        if let TableEvent::Expired { never_used, .. } = event {
            seen.lock().unwrap().push(never_used);
        }
    });
    let unused = table.create().unwrap().id();
    let used = used_and_detached(&table);
    let held = table.create().unwrap();
    // A create expires its own shard in passing, so the never-used session may already
    // be gone before this sweep: count the expiries, not what this call returns.
    table.expire();
    assert_eq!(*expired.lock().unwrap(), vec![true]);
    assert_eq!(table.attach(unused).unwrap_err(), TableError::Unknown);
    assert!(table.attach(used).is_ok());
    assert!(table.attach(held.id()).is_ok());
}

#[test]
fn only_sessions_without_connections_expire() {
    let table = table(10, Duration::ZERO, Duration::ZERO);
    let held = table.create().unwrap();
    held.retain(&vec![1]);
    let dropped = used_and_detached(&table);
    assert_eq!(table.expire(), 1);
    assert_eq!(table.attach(dropped).unwrap_err(), TableError::Unknown);
    let again = table.attach(held.id()).unwrap();
    drop(held);
    assert_eq!(table.expire(), 0, "one connection is still attached");
    drop(again);
    assert_eq!(table.expire(), 1);
    assert!(table.is_empty());
}

#[test]
fn retained_responses_are_weighed_and_given_back_when_the_session_goes() {
    let table = table(10, LONG, LONG);
    let attached = table.create().unwrap();
    attached.retain(&vec![0; 100]);
    attached.retain(&vec![0; 30]);
    assert_eq!(
        table.budget().used(),
        30,
        "the newer response replaces the older"
    );
    let id = attached.id();
    drop(attached);
    assert!(table.end(id));
    assert_eq!(table.budget().used(), 0);
}

#[test]
fn events_report_every_change() {
    let events = Arc::new(StdMutex::new(Vec::new()));
    let sink = Arc::clone(&events);
    let table = SessionTable::<Vec<u8>>::new(
        TableConfig {
            max_sessions: 1,
            unused_expiry: Duration::ZERO,
            ..TableConfig::default()
        },
        Budget::new(0),
    )
    .with_observer(move |e| sink.lock().unwrap().push(e));
    let first = table.create().unwrap();
    let f = first.fingerprint();
    drop(table.attach(first.id()).unwrap());
    drop(first);
    assert_eq!(table.expire(), 1);
    let id = table.create().unwrap().id();
    assert!(table.end(id));
    let g = table.fingerprint(id);
    assert_eq!(
        *events.lock().unwrap(),
        [
            TableEvent::Created(f),
            TableEvent::Attached(f),
            TableEvent::Expired {
                session: f,
                never_used: true
            },
            TableEvent::Created(g),
            TableEvent::Ended(g),
        ]
    );
}

#[test]
fn reconnecting_often_keeps_the_detached_queues_small() {
    let table = table(10, LONG, LONG);
    let id = used_and_detached(&table);
    // Smaller under Miri, which runs this some thousand times slower.
    for _ in 0..if cfg!(miri) { 300 } else { 10_000 } {
        drop(table.attach(id).unwrap());
    }
    let records: usize = table.inner.shards.iter().map(|s| lock(s).records()).sum();
    assert!(records <= 40, "{records} records for one session");
}

#[test]
fn many_threads_create_attach_and_end_without_losing_count() {
    let table = table(10_000, LONG, LONG);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..if cfg!(miri) { 20 } else { 500 } {
                    let a = table.create().unwrap();
                    let id = a.id();
                    drop(a);
                    drop(table.attach(id).unwrap());
                    assert!(table.end(id));
                }
            });
        }
    });
    assert!(table.is_empty());
}

#[test]
fn a_full_table_evicts_never_used_sessions_before_used_ones() {
    let table = table(2, LONG, LONG);
    let used = used_and_detached(&table);
    std::thread::sleep(Duration::from_millis(3));
    let unused = table.create().unwrap().id();
    let _newcomer = table.create().unwrap();
    assert_eq!(table.attach(unused).unwrap_err(), TableError::Unknown);
    assert!(table.attach(used).is_ok());
}

#[test]
fn retained_responses_over_the_budget_evict_detached_sessions_only() {
    let config = TableConfig {
        max_sessions: 10,
        memory_eviction_grace: Duration::ZERO,
        ..TableConfig::default()
    };
    let table = SessionTable::new(config, Budget::new(100)).with_weigher(Vec::len);
    let detached = {
        let attached = table.create().unwrap();
        attached.retain(&vec![0; 60]);
        attached.id()
    };
    let held = table.create().unwrap();
    held.retain(&vec![0; 60]);
    assert_eq!(table.attach(detached).unwrap_err(), TableError::Unknown);
    assert_eq!(table.budget().used(), 60);
    let other = table.create().unwrap();
    other.retain(&vec![0; 60]);
    assert_eq!(
        table.budget().used(),
        120,
        "connected sessions keep their responses"
    );
    assert!(table.attach(held.id()).is_ok());
}

#[test]
fn a_session_that_just_lost_its_connection_keeps_its_response_over_the_budget() {
    let config = TableConfig {
        memory_eviction_grace: LONG,
        ..TableConfig::default()
    };
    let table = SessionTable::new(config, Budget::new(100)).with_weigher(Vec::len);
    let reconnecting = used_and_detached(&table);
    let other = table.create().unwrap();
    other.retain(&vec![0; 150]);
    assert!(
        table.attach(reconnecting).is_ok(),
        "spared under twice the limit"
    );
    let third = table.create().unwrap();
    third.retain(&vec![0; 100]);
    assert_eq!(
        table.attach(reconnecting).unwrap_err(),
        TableError::Unknown,
        "evicted above twice the limit"
    );
}

/// A session that completed request 1 with `bytes` bytes, then lost its connection.
fn completed_and_detached(table: &SessionTable<Vec<u8>>, bytes: usize) -> u64 {
    let attached = table.create().unwrap();
    let guard = attached.state().start(RequestNr::new(1).unwrap()).unwrap();
    attached.retain(&guard.complete(vec![0; bytes]));
    attached.id()
}

#[test]
fn memory_needed_now_evicts_the_longest_detached_session_worth_it_despite_the_grace() {
    let config = TableConfig {
        memory_eviction_grace: LONG,
        ..TableConfig::default()
    };
    let table = SessionTable::new(config, Budget::new(100)).with_weigher(Vec::len);
    let older = completed_and_detached(&table, 10);
    std::thread::sleep(Duration::from_millis(3)); // detached in a later millisecond
    let newer = completed_and_detached(&table, 10);
    let connected = table.create().unwrap();
    connected.retain(&vec![0; 10]);
    let never_used = table.create().unwrap().id();
    assert_eq!(table.budget().used(), 30);
    let any = |_: &Vec<u8>| true;
    assert!(table.evict_for_memory(any));
    assert_eq!(table.attach(older).unwrap_err(), TableError::Unknown);
    assert_eq!(table.budget().used(), 20);
    assert!(table.evict_for_memory(any));
    assert!(
        !table.evict_for_memory(any),
        "connected and never-used sessions stay"
    );
    assert_eq!(table.attach(newer).unwrap_err(), TableError::Unknown);
    assert!(table.attach(connected.id()).is_ok());
    assert!(table.attach(never_used).is_ok());
}

#[test]
fn memory_needed_now_spares_sessions_whose_response_is_not_worth_evicting() {
    let table = table(10, LONG, LONG);
    let small = completed_and_detached(&table, 8);
    let large = completed_and_detached(&table, 800);
    let worth = |response: &Vec<u8>| response.len() >= 100;
    assert!(table.evict_for_memory(worth));
    assert!(!table.evict_for_memory(worth));
    assert_eq!(table.attach(large).unwrap_err(), TableError::Unknown);
    assert!(table.attach(small).is_ok(), "the older, small one stays");
}

/// Regression: two `retain` calls on one session at once could give back the response
/// each replaced before the other had counted its own, taking `used` below zero (it
/// wraps): the table then saw its budget as exceeded and evicted every session without
/// a connection. Counted: `used` never leaves the range the retained responses span,
/// and no detached session is evicted while they fit.
#[test]
fn simultaneous_retains_on_one_session_never_take_used_below_zero() {
    const BIG: usize = 100 << 10;
    let table = table(1000, LONG, LONG);
    let bystanders: Vec<u64> = (0..8).map(|_| used_and_detached(&table)).collect();
    let floor = 8 * 10;
    let session = table.create().unwrap();
    let budget = Arc::clone(table.budget());
    let stop = AtomicBool::new(false);
    let lowest_seen = AtomicUsize::new(usize::MAX);
    let highest_seen = AtomicUsize::new(0);
    std::thread::scope(|s| {
        let until = Instant::now() + Duration::from_millis(1500);
        // More threads than this machine's two cores: a thread preempted between its
        // two updates opens the window for the others.
        for t in 0..6 {
            let (session, stop) = (&session, &stop);
            s.spawn(move || {
                let (small, big) = (vec![0u8; 0], vec![0u8; BIG]);
                let mut i = t;
                while !stop.load(Ordering::Relaxed) {
                    session.retain(if i % 2 == 0 { &big } else { &small });
                    i += 1;
                    if i % 1024 == 0 && Instant::now() >= until {
                        stop.store(true, Ordering::SeqCst);
                    }
                }
            });
        }
        s.spawn(|| {
            while !stop.load(Ordering::SeqCst) {
                let used = budget.used();
                lowest_seen.fetch_min(used, Ordering::Relaxed);
                highest_seen.fetch_max(used, Ordering::Relaxed);
            }
        });
    });
    let (lowest, highest) = (lowest_seen.into_inner(), highest_seen.into_inner());
    assert!(
        lowest >= floor && highest <= floor + 6 * BIG,
        "used went to {lowest}..{highest}, outside {floor}..{}",
        floor + 6 * BIG
    );
    for id in bystanders {
        assert!(table.attach(id).is_ok(), "a detached session was evicted");
    }
}

#[test]
fn a_call_that_does_not_fit_evicts_detached_sessions_longest_detached_first_until_it_fits() {
    let table = table(1000, LONG, LONG); // a 1 MiB budget
    let oldest = completed_and_detached(&table, 300 << 10);
    std::thread::sleep(Duration::from_millis(3));
    let middle = completed_and_detached(&table, 300 << 10);
    std::thread::sleep(Duration::from_millis(3));
    let newest = completed_and_detached(&table, 300 << 10);
    let connected = table.create().unwrap();
    connected.retain(&vec![0; 100 << 10]);
    let mut call = table.budget().try_reserve(0).unwrap();
    assert!(table.admit(&mut call, 500 << 10, |_| true));
    assert_eq!(call.bytes(), 500 << 10);
    assert_eq!(table.attach(oldest).unwrap_err(), TableError::Unknown);
    assert_eq!(table.attach(middle).unwrap_err(), TableError::Unknown);
    assert!(table.attach(newest).is_ok(), "evicted more than needed");
}

#[test]
fn a_call_is_refused_room_only_when_no_detached_session_holds_a_response() {
    let table = table(1000, LONG, LONG);
    let connected = table.create().unwrap();
    let guard = connected.state().start(RequestNr::new(1).unwrap()).unwrap();
    connected.retain(&guard.complete(vec![0; 900 << 10]));
    let _never_used = table.create().unwrap().id();
    let mut call = table.budget().try_reserve(0).unwrap();
    assert!(!table.admit(&mut call, 200 << 10, |_| true));
    assert_eq!(call.bytes(), 0, "nothing taken");
    assert_eq!(table.len(), 2, "no session lost for nothing");
    drop(connected);
    assert!(table.admit(&mut call, 200 << 10, |_| true));
}
