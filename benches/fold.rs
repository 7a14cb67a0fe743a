//! Core, one thread: decode, fold, the full processor (fold, score, timers,
//! outreach), snapshot encode/decode; and memory per customer, measured by a
//! counting global allocator (heap bytes held after folding, per customer).
//!
//! cargo bench --bench fold

use std::{
    alloc::{GlobalAlloc, Layout, System},
    hint::black_box,
    sync::{
        atomic::{AtomicIsize, Ordering},
        Arc,
    },
};

use churnwatch::{
    codec::{self, Format},
    config::{CoreConfig, FoldConfig},
    generate::{GenConfig, Generator},
    pb::InteractionEvent,
    population::PopulationModel,
    processor::Processor,
    score,
    signals::Context,
    state::CustomerState,
    store::CustomerStore,
    time::Span,
    validate::validate,
};
use criterion::{criterion_group, BatchSize, Criterion, Throughput};

struct Counting;

static HELD: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        HELD.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HELD.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        HELD.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const CUSTOMERS: u64 = 100_000;

fn population() -> Vec<InteractionEvent> {
    Generator::new(GenConfig {
        customers: CUSTOMERS,
        span: Span::days(60),
        ..GenConfig::default()
    })
    .collect()
}

/// The fold alone, into the same compact store the processor uses.
fn fold_all(events: &[InteractionEvent], cfg: &FoldConfig) -> CustomerStore {
    let mut store = CustomerStore::default();
    for e in events {
        let Ok(v) = validate(e, None, cfg) else {
            continue;
        };
        let slot = match store.find(&e.customer_id) {
            Some(slot) => slot,
            None => store.insert(&e.customer_id, CustomerState::new(v.at)),
        };
        if let Some(s) = store.slot_mut(slot) {
            s.state.apply(&v, cfg);
        }
    }
    store
}

fn processor() -> Processor {
    let cfg = Arc::new(CoreConfig::default());
    let model = Arc::new(PopulationModel::prior(&cfg.model));
    Processor::new(cfg, model)
}

fn run_processor(p: &mut Processor, events: &[InteractionEvent]) -> usize {
    let mut out = Vec::new();
    let mut sent = 0;
    for e in events {
        let _ = p.process(e, None, &mut out);
        if let Some(st) = p.stream_time() {
            p.advance_to(st, &mut out);
        }
        sent += out.len();
        out.clear();
        if p.len() % 4096 == 0 {
            // as the pipeline does at a batch end
            p.seal();
            p.encode_sealed(usize::MAX);
            drop(p.take_encoded());
        }
    }
    sent
}

/// A processor that has taken every event, and the stream time 30 silent
/// days after the last one.
fn silent_after(events: &[InteractionEvent]) -> (Processor, i64) {
    let mut p = processor();
    run_processor(&mut p, events);
    let t = p.stream_time().unwrap_or(0) + Span::days(30).as_secs();
    (p, t)
}

/// Heap bytes per customer held by a folded store and by a full processor.
fn report_memory(events: &[InteractionEvent]) {
    let cfg = FoldConfig::default();
    let before = HELD.load(Ordering::Relaxed);
    let store = fold_all(events, &cfg);
    let held = HELD.load(Ordering::Relaxed) - before;
    let inline = std::mem::size_of::<CustomerState>();
    eprintln!(
        "memory: fold store  {} customers, {} heap bytes, {:.0} bytes/customer (CustomerState inline {} bytes)",
        store.len(),
        held,
        held as f64 / store.len() as f64,
        inline
    );
    drop(store);
    let before = HELD.load(Ordering::Relaxed);
    let mut p = processor();
    run_processor(&mut p, events);
    let held = HELD.load(Ordering::Relaxed) - before;
    eprintln!(
        "memory: processor   {} customers, {} heap bytes, {:.0} bytes/customer (with timers, erasure set)",
        p.len(),
        held,
        held as f64 / p.len() as f64
    );
}

fn benches(c: &mut Criterion) {
    let events = population();
    eprintln!(
        "population: {} events, {} customers",
        events.len(),
        CUSTOMERS
    );
    report_memory(&events);
    let cfg = FoldConfig::default();
    let n = events.len() as u64;

    let pb: Vec<Vec<u8>> = events
        .iter()
        .map(|e| codec::encode(e, Format::Protobuf))
        .collect();
    let json: Vec<Vec<u8>> = events
        .iter()
        .take(200_000)
        .map(|e| codec::encode(e, Format::Json))
        .collect();
    let mut g = c.benchmark_group("decode");
    g.sample_size(10);
    g.throughput(Throughput::Elements(n));
    g.bench_function("protobuf", |b| {
        b.iter(|| {
            pb.iter()
                .filter(|m| codec::decode(m, Format::Protobuf).is_ok())
                .count()
        })
    });
    g.throughput(Throughput::Elements(json.len() as u64));
    g.bench_function("json", |b| {
        b.iter(|| {
            json.iter()
                .filter(|m| codec::decode(m, Format::Json).is_ok())
                .count()
        })
    });
    g.finish();

    let mut g = c.benchmark_group("fold");
    g.sample_size(10);
    g.throughput(Throughput::Elements(n));
    g.bench_function("validate+apply/100k_customers", |b| {
        b.iter(|| black_box(fold_all(&events, &cfg)).len())
    });
    g.bench_function("process/fold+score+timers+outreach/100k_customers", |b| {
        b.iter_batched(
            processor,
            |mut p| run_processor(&mut p, &events),
            BatchSize::LargeInput,
        )
    });
    g.finish();

    // Scoring one customer, as the processor does after each event (risk
    // and level, the explained score for outreach, and the search for the
    // next level change that sets the customer's silence timer), and as a
    // timer firing does (a re-score in the processor, with its bookkeeping).
    let store = fold_all(&events, &cfg);
    let core = CoreConfig::default();
    let model = PopulationModel::prior(&core.model);
    let ctx = Context::new(&core, &model);
    let states: Vec<&CustomerState> = store.iter().map(|(_, s)| &s.state).collect();
    let horizon = core.score.timer_horizon.as_secs();
    let mut g = c.benchmark_group("score");
    g.sample_size(10);
    g.throughput(Throughput::Elements(states.len() as u64));
    g.bench_function("risk/100k", |b| {
        b.iter(|| {
            states
                .iter()
                .map(|s| score::risk(s, s.last_event_at, &ctx))
                .sum::<f64>()
        })
    });
    g.bench_function("explained/100k", |b| {
        b.iter(|| {
            states
                .iter()
                .map(|s| score::score(s, s.last_event_at, &ctx).reasons.len())
                .sum::<usize>()
        })
    });
    g.bench_function("next_change/100k", |b| {
        b.iter(|| {
            states
                .iter()
                .filter_map(|s| {
                    score::schedule::next_change(
                        s,
                        s.last_event_at,
                        s.last_event_at + horizon,
                        &ctx,
                    )
                })
                .count()
        })
    });
    g.finish();
    // Timers firing: a processor that has taken every event, then stream
    // time moved 30 days past the last one with no events (silence): every
    // timer due by then fires and re-scores its customer.
    let fired = {
        let (mut p, t) = silent_after(&events);
        let before = p.timers_fired();
        p.advance_to(t, &mut Vec::new());
        p.timers_fired() - before
    };
    eprintln!("score: {fired} timers fire over 30 silent days after the population");
    let mut g = c.benchmark_group("score");
    g.sample_size(10);
    g.throughput(Throughput::Elements(fired));
    g.bench_function("timer_firing/30_silent_days", |b| {
        b.iter_batched(
            || silent_after(&events),
            |(mut p, t)| {
                let mut out = Vec::new();
                p.advance_to(t, &mut out);
                out.len()
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();

    let mut sorted: Vec<(&str, &CustomerState)> = store
        .iter()
        .map(|(_, s)| (s.id.as_str(), &s.state))
        .collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let snaps: Vec<Vec<u8>> = sorted.iter().map(|(k, s)| s.encode_snapshot(k)).collect();
    let bytes: usize = snaps.iter().map(Vec::len).sum();
    eprintln!(
        "snapshot: {:.0} bytes/customer encoded",
        bytes as f64 / snaps.len() as f64
    );
    let mut g = c.benchmark_group("snapshot");
    g.sample_size(10);
    g.throughput(Throughput::Elements(sorted.len() as u64));
    g.bench_function("encode/100k", |b| {
        b.iter(|| {
            sorted
                .iter()
                .map(|(k, s)| s.encode_snapshot(k).len())
                .sum::<usize>()
        })
    });
    g.bench_function("decode/100k", |b| {
        b.iter(|| {
            snaps
                .iter()
                .filter(|s| CustomerState::decode_snapshot(s).is_ok())
                .count()
        })
    });
    g.finish();
}

criterion_group!(core, benches);

fn main() {
    core();
    Criterion::default().configure_from_args().final_summary();
}
