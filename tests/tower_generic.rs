//! The layer around a service that is not HTTP: a key extractor given as a closure,
//! `Clone` responses kept as they are, and the typed errors.
#![cfg(feature = "tower")]

use exactly_once::table::{Budget, SessionTable, TableConfig};
use exactly_once::tower::{
    CloneStore, Error, ExactlyOnce, ExactlyOnceLayer, Key, KeyError, SessionId,
};
use exactly_once::RequestNr;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tower_layer::Layer;
use tower_service::Service;

/// A request of a toy protocol: `session` 0 asks for a new session.
#[derive(Clone, Debug)]
struct Ask {
    session: u64,
    number: u64,
    fail: bool,
    delay_ms: u64,
}

#[derive(Clone, Debug, PartialEq)]
enum Reply {
    Session(u64),
    Ended,
    Ran(u64),
}

/// Counts its runs as they start; fails or waits when asked to.
#[derive(Clone, Default)]
struct Counter {
    runs: Arc<AtomicU64>,
}

impl Service<Ask> for Counter {
    type Response = Reply;
    type Error = &'static str;
    type Future = Pin<Box<dyn Future<Output = Result<Reply, &'static str>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, ask: Ask) -> Self::Future {
        let run = self.runs.fetch_add(1, Ordering::SeqCst) + 1;
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(ask.delay_ms)).await;
            if ask.fail {
                Err("failed on purpose")
            } else {
                Ok(Reply::Ran(run))
            }
        })
    }
}

/// The session that asks for no exactly-once: its requests run as they are.
const UNPROTECTED: u64 = u64::MAX;

fn key(ask: &Ask) -> Result<Key, KeyError> {
    if ask.session == UNPROTECTED {
        return Ok(Key::PassThrough);
    }
    let Some(session) = SessionId::new(ask.session) else {
        return Ok(Key::Create);
    };
    match RequestNr::new(ask.number) {
        Ok(request) => Ok(Key::Call { session, request }),
        Err(_) if ask.number == 0 => Ok(Key::End { session }),
        Err(_) => Err(KeyError::BadRequest),
    }
}

type Answer = Result<Reply, Error<&'static str>>;

type KeyFn = fn(&Ask) -> Result<Key, KeyError>;
type Layered = ExactlyOnce<Counter, KeyFn, CloneStore<Reply>>;

/// `counter` behind the layer, with a table of its own within `config`.
fn layered(config: TableConfig, counter: Counter) -> Layered {
    let store = CloneStore::new(|id: SessionId| Reply::Session(id.get()), || Reply::Ended);
    let table = SessionTable::new(config, Budget::new(1 << 20));
    ExactlyOnceLayer::new(key as KeyFn, store, table).layer(counter)
}

async fn new_session<S: Service<Ask, Response = Reply, Error = Error<&'static str>>>(
    service: &mut S,
) -> u64 {
    let Ok(Reply::Session(s)) = call(service, 0, 0, false).await else {
        panic!("a new session")
    };
    s
}

async fn call<S: Service<Ask, Response = Reply, Error = Error<&'static str>>>(
    service: &mut S,
    session: u64,
    number: u64,
    fail: bool,
) -> Answer {
    poll_fn(|cx| service.poll_ready(cx)).await?;
    let delay_ms = 0;
    let ask = Ask {
        session,
        number,
        fail,
        delay_ms,
    };
    service.call(ask).await
}

#[tokio::test]
async fn any_service_runs_once_per_number_with_typed_errors() {
    let counter = Counter::default();
    let mut service = layered(TableConfig::default(), counter.clone());
    let s = new_session(&mut service).await;
    assert_eq!(
        call(&mut service, s, 1, false).await.unwrap(),
        Reply::Ran(1)
    );
    assert_eq!(
        call(&mut service, s, 1, false).await.unwrap(),
        Reply::Ran(1)
    );
    assert!(matches!(
        call(&mut service, s, 2, true).await,
        Err(Error::Inner("failed on purpose"))
    ));
    assert!(matches!(
        call(&mut service, s, 2, false).await,
        Err(Error::Abandoned)
    ));
    assert!(matches!(
        call(&mut service, s, 1, false).await,
        Err(Error::Stale)
    ));
    assert_eq!(
        call(&mut service, s, 3, false).await.unwrap(),
        Reply::Ran(3)
    );
    assert!(matches!(
        call(&mut service, s, RequestNr::MAX + 1, false).await,
        Err(Error::Key(KeyError::BadRequest))
    ));
    assert_eq!(call(&mut service, s, 0, false).await.unwrap(), Reply::Ended);
    assert!(matches!(
        call(&mut service, s, 4, false).await,
        Err(Error::UnknownSession)
    ));
    assert_eq!(counter.runs.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_table_refuses_creation_while_its_session_runs_a_request_and_evicts_it_after() {
    let config = TableConfig {
        max_sessions: 1,
        ..TableConfig::default()
    };
    let mut service = layered(config, Counter::default());
    let held = new_session(&mut service).await;
    let mut copy = service.clone();
    let running = tokio::spawn(async move {
        let slow = Ask {
            session: held,
            number: 1,
            fail: false,
            delay_ms: 300,
        };
        poll_fn(|cx| copy.poll_ready(cx)).await.unwrap();
        copy.call(slow).await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let full = call(&mut service, 0, 0, false).await;
    assert!(matches!(full, Err(Error::TableFull)), "{full:?}");
    assert_eq!(running.await.unwrap().unwrap(), Reply::Ran(1));
    let evicted_for = new_session(&mut service).await;
    assert_ne!(evicted_for, held);
    let gone = call(&mut service, held, 2, false).await;
    assert!(matches!(gone, Err(Error::UnknownSession)), "{gone:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_caller_goes_away_finishes_and_its_resend_gets_the_answer() {
    let counter = Counter::default();
    let mut service = layered(TableConfig::default(), counter.clone());
    let s = new_session(&mut service).await;
    let slow = Ask {
        session: s,
        number: 1,
        fail: false,
        delay_ms: 200,
    };
    poll_fn(|cx| service.poll_ready(cx)).await.unwrap();
    let first = tokio::time::timeout(Duration::from_millis(50), service.call(slow.clone())).await;
    assert!(first.is_err(), "the caller went away while its copy ran");
    poll_fn(|cx| service.poll_ready(cx)).await.unwrap();
    assert_eq!(service.call(slow).await.unwrap(), Reply::Ran(1));
    assert_eq!(counter.runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_request_the_extractor_passes_through_runs_every_time_and_is_not_kept() {
    let counter = Counter::default();
    let mut service = layered(TableConfig::default(), counter.clone());
    for run in 1..=3 {
        let answer = call(&mut service, UNPROTECTED, 1, false).await.unwrap();
        assert_eq!(answer, Reply::Ran(run));
    }
    let failed = call(&mut service, UNPROTECTED, 1, true).await;
    assert!(matches!(failed, Err(Error::Inner("failed on purpose"))));
    assert_eq!(counter.runs.load(Ordering::SeqCst), 4);
    let s = new_session(&mut service).await;
    assert_eq!(
        call(&mut service, s, 1, false).await.unwrap(),
        Reply::Ran(5)
    );
}
