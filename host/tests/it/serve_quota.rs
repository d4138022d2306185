//! Issue 15: tenant quotas of `weir serve`, through the real binary —
//! running jobs (429), disk (jobs paused between batches, 413, resumed
//! once under), module and state memory (paused, 413) and fuel per second
//! (a tenant with many jobs is held to its rate while another tenant's
//! job keeps its deadlines; a job submitted while held back shares it); every quota reported by
//! `GET /v1/tenant`.

use std::path::Path;
use std::time::Instant;

use weir::serve::api::JobState;
use weir::serve::ClientError;

use crate::serve_durable::{
    batches, generator, head, module, output, wait_for, Host, INTERVAL_MS, SPLIT, WAIT,
};

const ALICE: &str = "alice-token-0123456789abcdef";
const BOB: &str = "bob-token-0123456789abcdef0000";

/// A host whose configuration is `quotas` (alice's `[tenant.quota]`
/// lines) for alice, and none for bob.
fn host(dir: &Path, quotas: &str) -> Host {
    let hash = |t: &str| crate::serve_durable::hex_of(&weir::serve::config::hash_token(t));
    std::fs::write(
        dir.join("serve.toml"),
        format!(
            "bind = \"127.0.0.1:0\"\ndata_dir = \"data\"\nquota_check_interval = \"100ms\"\n\n\
             [[tenant]]\nname = \"alice\"\ntoken_sha256 = \"{}\"\n[tenant.quota]\n{quotas}\n\n\
             [[tenant]]\nname = \"bob\"\ntoken_sha256 = \"{}\"\n",
            hash(ALICE),
            hash(BOB)
        ),
    )
    .unwrap();
    Host::start(dir)
}

/// Word counts per batch over the generator.
fn counts(name: &str, seed: u64) -> String {
    format!(
        "{}{}{SPLIT}[[stream]]\nname = \"counts\"\nop = \"reduce_by_key\"\ninput = \"words\"\nfunction = \"wc:sum\"\n\n{}",
        head(name),
        generator(seed),
        output("counts")
    )
}

/// A refused request's status, code and message.
fn refusal<T: std::fmt::Debug>(r: Result<T, ClientError>) -> (u16, String, String) {
    match r {
        Err(ClientError::Api {
            status,
            code,
            message,
        }) => (status, code, message),
        other => panic!("should have been refused: {other:?}"),
    }
}

/// Waits for the host's log to say the job ended.
fn wait_logged_end(host: &Host, id: &str) {
    let start = Instant::now();
    while !host
        .log()
        .lines()
        .any(|l| l.contains("job stopped") && l.contains(id))
    {
        assert!(start.elapsed() < WAIT, "{id} did not stop:\n{}", host.log());
        std::thread::sleep(std::time::Duration::from_millis(20)); // poll interval
    }
}

#[test]
fn issue_15_quota_of_running_jobs_is_429() {
    let dir = tempfile::tempdir().unwrap();
    let host = host(dir.path(), "jobs = 1");
    let alice = host.client(ALICE);
    let first = alice.submit(&counts("one", 1), &module(), &[]).unwrap().id;
    let (status, code, message) = refusal(alice.submit(&counts("two", 2), &module(), &[]));
    assert_eq!(
        (status, code.as_str()),
        (429, "quota_exceeded"),
        "{message}"
    );
    assert!(message.contains("jobs quota"), "{message}");
    let t = alice.tenant().unwrap();
    assert_eq!((t.jobs.used, t.jobs.limit), (1, Some(1)));
    // Bob has the default quota, untouched by Alice's.
    assert!(host
        .client(BOB)
        .submit(&counts("b", 3), &module(), &[])
        .is_ok());
    alice.stop(&first).unwrap();
    alice.submit(&counts("two", 2), &module(), &[]).unwrap();
}

#[test]
fn issue_15_disk_quota_pauses_between_batches_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let host = host(dir.path(), "disk_mb = 1");
    let alice = host.client(ALICE);
    // Every word of 5 000 lines a batch: ~300 KB a batch.
    let heavy = format!(
        "{}{}{SPLIT}{}",
        head("heavy"),
        generator(5).replace("rate = 400", "rate = 20000"),
        output("words")
    );
    let small = alice
        .submit(&counts("small", 6), &module(), &[])
        .unwrap()
        .id;
    let big = alice.submit(&heavy, &module(), &[]).unwrap().id;
    for id in [&big, &small] {
        let info = wait_for(&host, &alice, id, "a pause", |i| {
            i.state == JobState::Paused
        });
        let why = info.paused.unwrap();
        assert!(
            why.starts_with("disk quota 1.0 MB exceeded (used "),
            "{why}"
        );
        wait_logged_end(&host, id);
    }
    // Paused after a batch, not in the middle of one: every batch
    // directory is complete, none half-written.
    let out = dir.path().join("data/alice/jobs").join(&big).join("out");
    for e in std::fs::read_dir(&out).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        assert!(!name.starts_with('.'), "a partial batch: {name}");
        assert!(e.path().join("_SUCCESS").exists(), "{name}");
    }
    let t = alice.tenant().unwrap();
    assert_eq!(t.disk_bytes.limit, Some(1 << 20));
    assert!(t.disk_bytes.used > 1 << 20, "{t:?}");
    let (status, code, message) = refusal(alice.submit(&counts("more", 7), &module(), &[]));
    assert_eq!(
        (status, code.as_str()),
        (413, "quota_exceeded"),
        "{message}"
    );
    assert!(message.contains("disk quota 1.0 MB"), "{message}");
    // Bob is not held by Alice's quota.
    assert!(host
        .client(BOB)
        .submit(&counts("b", 8), &module(), &[])
        .is_ok());

    // Room again: the small job resumes from its checkpoint, catching up
    // on the batches it missed (no batch time is skipped).
    let before = batches(&dir.path().join("data/alice/jobs").join(&small).join("out"))
        .get("counts")
        .map_or(0, Vec::len);
    alice.delete(&big).unwrap();
    wait_for(&host, &alice, &small, "the resumption", |i| {
        i.state == JobState::Running && i.batches >= 2
    });
    let after = batches(&dir.path().join("data/alice/jobs").join(&small).join("out"));
    assert!(after["counts"].len() > before);
    for w in after["counts"].windows(2) {
        assert_eq!(w[1].0 - w[0].0, INTERVAL_MS as i64, "a batch time skipped");
    }
    assert!(alice.tenant().unwrap().disk_bytes.used < 1 << 20);
}

#[test]
fn issue_15_memory_quota_counts_module_and_state_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let host = host(dir.path(), "memory_mb = 1");
    let alice = host.client(ALICE);
    // Running counts over 100 000 distinct words: the state outgrows 1 MB.
    let stateful = format!(
        "{}[[source]]\nname = \"lines\"\ntype = \"generator\"\nrate = 4000\nwords_per_line = 100\nvocabulary = 100000\n\n{SPLIT}\
         [[stream]]\nname = \"totals\"\nop = \"update_state_by_key\"\ninput = \"words\"\nfunction = \"wc:running_count\"\n\n{}",
        head("big-state"),
        output("totals")
    );
    let id = alice.submit(&stateful, &module(), &[]).unwrap().id;
    let info = wait_for(&host, &alice, &id, "a pause", |i| {
        i.state == JobState::Paused
    });
    let why = info.paused.unwrap();
    assert!(
        why.starts_with("memory quota 1.0 MB exceeded (used "),
        "{why}"
    );
    let t = alice.tenant().unwrap();
    assert!(t.memory_bytes.used > 1 << 20, "{t:?}");
    assert_eq!(t.memory_bytes.limit, Some(1 << 20));
    let (status, code, message) = refusal(alice.submit(&counts("more", 2), &module(), &[]));
    assert_eq!(
        (status, code.as_str()),
        (413, "quota_exceeded"),
        "{message}"
    );
    assert!(message.contains("memory quota 1.0 MB"), "{message}");
    // Stopped, its state no longer counts: there is room again.
    assert_eq!(alice.stop(&id).unwrap().state, JobState::Stopped);
    assert!(alice.tenant().unwrap().memory_bytes.used < 1 << 20);
    alice.submit(&counts("more", 2), &module(), &[]).unwrap();
}

#[test]
fn issue_15_fuel_quota_holds_a_tenant_to_its_rate_and_not_the_others() {
    // The fuel of one batch of the job, measured on a host without quotas.
    let dir = tempfile::tempdir().unwrap();
    let probe = host(dir.path(), "");
    let bob = probe.client(BOB);
    let id = bob.submit(&counts("probe", 1), &module(), &[]).unwrap().id;
    let done = wait_for(&probe, &bob, &id, "4 batches", |i| i.batches >= 4);
    let per_batch = bob.tenant().unwrap().fuel_total / done.batches.max(1);
    assert!(per_batch > 0);
    probe.kill();

    // Alice may burn eight batches' fuel per second; her thirty jobs would
    // burn a hundred and twenty (four batches a second each).
    const QUOTA: u64 = 8;
    let dir = tempfile::tempdir().unwrap();
    let host = host(
        dir.path(),
        &format!("fuel_per_second = {}", QUOTA * per_batch),
    );
    let (alice, bob) = (host.client(ALICE), host.client(BOB));
    for i in 0..30 {
        alice
            .submit(&counts(&format!("a{i}"), 10 + i), &module(), &[])
            .unwrap();
    }
    let b = bob.submit(&counts("b", 20), &module(), &[]).unwrap().id;
    wait_for(&host, &bob, &b, "6 batches", |i| i.batches >= 6);
    let (a1, t1) = (alice.tenant().unwrap().fuel_total, Instant::now());
    wait_for(&host, &bob, &b, "18 batches", |i| i.batches >= 18);
    let a2 = alice.tenant().unwrap();
    let seconds = t1.elapsed().as_secs_f64();
    let rate = (a2.fuel_total - a1) as f64 / seconds / (QUOTA * per_batch) as f64;
    println!(
        "fuel quota: alice at {rate:.2}x her fuel quota (demand 15x), held back {} ms",
        a2.throttled_ms
    );
    assert!(rate < 2.5, "alice burnt {rate:.2}× her fuel quota");
    assert!(a2.throttled_ms > 0);
    assert_eq!(a2.fuel_per_second.limit, Some(QUOTA * per_batch));
    // Bob's job kept its deadlines next to Alice's held-back jobs.
    let info = bob.status(&b).unwrap();
    let worst = info
        .recent
        .iter()
        .map(|s| s.scheduling_delay_ms)
        .fold(0.0, f64::max);
    println!("fuel quota: bob's worst scheduling delay {worst:.1} ms (bound {INTERVAL_MS} ms)");
    assert!(
        worst < INTERVAL_MS as f64,
        "bob's scheduling delay reached {worst} ms"
    );
    // While held back, Alice may still deploy: the new job shares her rate.
    assert!(a2.throttled_ms > 0);
    let extra = alice
        .submit(&counts("extra", 30), &module(), &[])
        .unwrap()
        .id;
    wait_for(&host, &alice, &extra, "2 batches", |i| i.batches >= 2);
}
