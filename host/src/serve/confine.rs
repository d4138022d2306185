//! Path confinement: a submitted pipeline may only name files inside its
//! job's directory (which lies inside its tenant's), and may only connect
//! to loopback sockets. Checked on the parsed pipeline's typed definitions
//! before anything is written or started, so a refused pipeline touches
//! nothing (parsing reads no file).

use std::net::IpAddr;
use std::path::{Component, Path};

use super::config::KafkaPolicy;
use crate::config::{OutputKind, Pipeline};
use crate::job::SourceSpec;
use crate::kafka::KafkaEndpoint;
use crate::output::kafka::Delivery;

/// The file the pipeline is written to in the job directory.
pub const PIPELINE_FILE: &str = "pipeline.toml";

/// Checks every path and socket host of a pipeline: the paths of its
/// typed definitions ([`Pipeline::paths`]), so a path option is confined as
/// soon as the parser knows it. Returns every problem (`key = "value":
/// why`), or nothing when the text is not a pipeline at all (the parser then
/// reports that, before touching any file). Parsing reads no file.
pub fn check_pipeline(src: &str, kafka: &KafkaPolicy) -> Vec<String> {
    let Some(pipeline) = Pipeline::parse_unchecked(Path::new(PIPELINE_FILE), src) else {
        return Vec::new();
    };
    let mut problems = Vec::new();
    for (what, path) in pipeline.paths() {
        if let Err(why) = relative_inside(path).and_then(|()| not_reserved(path)) {
            problems.push(format!("{what} = {path:?}: {why}"));
        }
    }
    for o in &pipeline.outputs {
        // The suffix is appended to a directory name.
        if let OutputKind::TextFiles {
            suffix: Some(suffix),
            ..
        } = &o.kind
        {
            if suffix.contains(['/', '\\']) || suffix.contains("..") {
                problems.push(format!(
                    "[[output]] #{} suffix = {suffix:?}: a suffix may not contain `/`, `\\` or `..`",
                    o.table
                ));
            }
        }
    }
    problems.extend(check_kafka(&pipeline, kafka));
    for s in &pipeline.sources {
        if let SourceSpec::Socket { host, .. } = &s.spec {
            if !is_loopback(host) {
                problems.push(format!(
                    "[[source]] #{} host = {host:?}: socket sources may only connect to this machine (localhost, 127.0.0.1, ::1)",
                    s.table
                ));
            }
        }
    }
    problems
}

/// Kafka sources, outputs and changelogs may reach only the brokers the
/// host allows, and use only the tenant's topic, group and transactional
/// id prefixes.
fn check_kafka(pipeline: &Pipeline, policy: &KafkaPolicy) -> Vec<String> {
    let mut problems = Vec::new();
    let brokers = |at: &str, endpoint: &KafkaEndpoint, problems: &mut Vec<String>| {
        for b in endpoint.broker_list() {
            if !policy.brokers.contains(&b) {
                problems.push(if policy.brokers.is_empty() {
                    format!("{at} brokers: broker {b:?} is not allowed: this host allows no Kafka broker (serve configuration [kafka] brokers)")
                } else {
                    format!(
                        "{at} brokers: broker {b:?} is not allowed; allowed: {}",
                        policy.brokers.join(", ")
                    )
                });
            }
        }
    };
    let prefixed =
        |at: &str, key: &str, name: &str, prefixes: &[String], problems: &mut Vec<String>| {
            if !prefixes.iter().any(|p| name.starts_with(p.as_str())) {
                problems.push(format!(
                    "{at} {key} = {name:?}: the tenant may only use names starting with {}",
                    prefixes
                        .iter()
                        .map(|p| format!("{p:?}"))
                        .collect::<Vec<_>>()
                        .join(" or ")
                ));
            }
        };
    for s in &pipeline.sources {
        if let SourceSpec::Kafka(k) = &s.spec {
            let at = format!("[[source]] #{}", s.table);
            brokers(&at, &k.endpoint, &mut problems);
            for t in &k.topics {
                prefixed(&at, "topic", t, &policy.topic_prefixes, &mut problems);
            }
            prefixed(
                &at,
                "group",
                &k.group,
                &policy.group_prefixes,
                &mut problems,
            );
        }
    }
    // A scaled-out job writes its changelog topic.
    if let Some(so) = &pipeline.config.scale_out {
        prefixed(
            "[scale_out]",
            "changelog",
            &so.changelog,
            &policy.topic_prefixes,
            &mut problems,
        );
    }
    for o in &pipeline.outputs {
        if let OutputKind::Kafka(k) = &o.kind {
            let at = format!("[[output]] #{}", o.table);
            brokers(&at, &k.endpoint, &mut problems);
            prefixed(
                &at,
                "topic",
                &k.topic,
                &policy.topic_prefixes,
                &mut problems,
            );
            // Only a transactional output uses its id (and could fence
            // another tenant's producer with it).
            if k.delivery == Delivery::Transactional {
                let id = k.transactional_id.clone().unwrap_or_else(|| {
                    let name = o.name.clone().unwrap_or_else(|| format!("to-{}", k.topic));
                    format!("weir.{}.{name}", pipeline.config.job_name)
                });
                prefixed(
                    &at,
                    "transactional_id",
                    &id,
                    &policy.group_prefixes,
                    &mut problems,
                );
            }
        }
    }
    problems
}

/// A path that stays inside the directory it is resolved in: relative,
/// without `..`.
pub fn relative_inside(s: &str) -> Result<(), &'static str> {
    if s.contains('\0') {
        return Err("paths may not contain NUL");
    }
    let p = Path::new(s);
    if p.is_absolute() || s.starts_with('~') {
        return Err("absolute paths are refused: give a path relative to the job's directory");
    }
    for c in p.components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => {
                return Err("`..` is refused: paths must stay inside the job's directory")
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(
                    "absolute paths are refused: give a path relative to the job's directory",
                )
            }
        }
    }
    Ok(())
}

/// A path that is not one of the files the host keeps in the job
/// directory (its pipeline, its record): a job may not write over them.
fn not_reserved(s: &str) -> Result<(), &'static str> {
    let first = Path::new(s)
        .components()
        .find(|c| !matches!(c, Component::CurDir))
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .unwrap_or_default();
    if first == PIPELINE_FILE || first.starts_with(super::record::RECORD_FILE) {
        return Err("the job's pipeline and record files are reserved to the host");
    }
    Ok(())
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A file name a submission may not use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Characters or length outside what is allowed.
    #[error("file name {name:?}: use 1 to 100 of A-Z, a-z, 0-9, `.`, `_` and `-`, not starting with `.` (modules go straight into the job's directory; data files may go one directory down, `DIR/NAME`)")]
    Shape { name: String },
    /// The pipeline's own file name.
    #[error("file name {name:?} is reserved for the pipeline")]
    Reserved { name: String },
    /// A module whose name does not say it is one.
    #[error("module {name:?}: module file names end in `.wasm` or `.wat`")]
    NotAModule { name: String },
}

/// A file name a submission may write into the job directory: 1 to 100 of
/// `A-Z a-z 0-9 . _ -`, not starting with `.`, not the pipeline file.
pub fn file_name(name: &str) -> Result<(), NameError> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !ok {
        return Err(NameError::Shape { name: name.into() });
    }
    if name == PIPELINE_FILE {
        return Err(NameError::Reserved { name: name.into() });
    }
    Ok(())
}

/// A data file's path in the job directory: a [`file_name`], or
/// `DIR/NAME` with both parts file names (e.g. `in/part-1.txt` for a files
/// source reading `in`).
pub fn file_path(path: &str) -> Result<(), NameError> {
    match path.split_once('/') {
        None => file_name(path),
        Some((dir, name)) => {
            file_name(dir).map_err(|_| NameError::Shape { name: path.into() })?;
            file_name(name).map_err(|_| NameError::Shape { name: path.into() })
        }
    }
}

/// A module's file name: a [`file_name`] ending in `.wasm` or `.wat`.
pub fn module_name(name: &str) -> Result<(), NameError> {
    file_name(name)?;
    if !(name.ends_with(".wasm") || name.ends_with(".wat")) {
        return Err(NameError::NotAModule { name: name.into() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_inside_pass() {
        for ok in [
            "wc.wasm",
            "out/counts",
            "./ck",
            "a/b/./c",
            "x..y",
            ".hidden",
        ] {
            assert_eq!(relative_inside(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn traversal_and_absolute_paths_fail() {
        for bad in [
            "/etc/passwd",
            "../x",
            "a/../../b",
            "a/..",
            "..",
            "~/x",
            "//x",
            "a\0b",
        ] {
            assert!(relative_inside(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_hosts_own_files_are_reserved() {
        let p = check_pipeline(
            "[job]\nstats_file = \"./.job.json\"\ncheckpoint = \"pipeline.toml\"\n",
            &KafkaPolicy::default(),
        );
        assert_eq!(p.len(), 2, "{p:#?}");
        assert!(p.iter().all(|x| x.contains("reserved")), "{p:#?}");
        assert!(not_reserved("out/pipeline.toml").is_ok());
    }

    #[test]
    fn every_path_key_is_checked() {
        let src = r#"
            [job]
            checkpoint = "../../other/ck"
            stats_file = "/tmp/stats"
            [plugins]
            wc = "../wc.wasm"
            ok = "fine.wasm"
            [[source]]
            name = "a"
            type = "files"
            dir = "/var/log"
            [[source]]
            name = "b"
            type = "socket"
            host = "example.org"
            port = 1
            [[source]]
            name = "c"
            type = "socket"
            host = "127.0.0.1"
            port = 1
            [[stream]]
            name = "s"
            op = "update_state_by_key"
            input = "a"
            initial_state = "../../../etc/shadow"
            [[output]]
            stream = "s"
            type = "text_files"
            prefix = "../../bob/jobs/x/out"
            [[output]]
            stream = "s"
            type = "text_files"
            prefix = "out/x"
            suffix = "/../../../../escape"
        "#;
        let p = check_pipeline(src, &KafkaPolicy::default());
        assert_eq!(p.len(), 8, "{p:#?}");
        for needle in [
            "plugins.wc",
            "[job] checkpoint",
            "[job] stats_file",
            "[[source]] #1 dir",
            "[[source]] #2 host",
            "[[stream]] #1 initial_state",
            "[[output]] #1 prefix",
            "[[output]] #2 suffix",
        ] {
            assert!(p.iter().any(|x| x.starts_with(needle)), "{needle}: {p:#?}");
        }
    }

    #[test]
    fn kafka_reaches_only_allowed_brokers_topics_and_groups() {
        let src = |brokers: &str, topic: &str, group: &str, txn: &str| {
            format!(
                r#"
            [[source]]
            name = "s"
            type = "kafka"
            brokers = "{brokers}"
            topics = ["{topic}"]
            group = "{group}"
            [[output]]
            stream = "s"
            type = "kafka"
            brokers = "{brokers}"
            topic = "{topic}-out"
            {txn}
        "#
            )
        };
        let policy = KafkaPolicy {
            brokers: vec!["127.0.0.1:9092".into()],
            topic_prefixes: vec!["alice.".into()],
            group_prefixes: vec!["alice.".into()],
        };
        let ok = src(
            "127.0.0.1:9092",
            "alice.in",
            "alice.g",
            "transactional_id = \"alice.t\"",
        );
        assert_eq!(check_pipeline(&ok, &policy), Vec::<String>::new());
        let bad = src(
            "10.0.0.1:9092",
            "bob.in",
            "bob.g",
            "delivery = \"transactional\"",
        );
        let p = check_pipeline(&bad, &policy);
        for needle in [
            "[[source]] #1 brokers: broker \"10.0.0.1:9092\" is not allowed",
            "[[source]] #1 topic = \"bob.in\"",
            "[[source]] #1 group = \"bob.g\"",
            "[[output]] #1 brokers",
            "[[output]] #1 topic = \"bob.in-out\"",
            // The default transactional id is not the tenant's.
            "[[output]] #1 transactional_id = \"weir.pipeline.to-bob.in-out\"",
        ] {
            assert!(p.iter().any(|x| x.starts_with(needle)), "{needle}: {p:#?}");
        }
        assert_eq!(p.len(), 6, "{p:#?}");
        let none = check_pipeline(&ok, &KafkaPolicy::default());
        assert!(none[0].contains("allows no Kafka broker"), "{none:?}");
        // A scaled-out job's changelog is a topic the tenant writes.
        let scaled = |changelog: &str| {
            format!(
                "[scale_out]\nchangelog = \"{changelog}\"\n{}",
                src("127.0.0.1:9092", "alice.in", "alice.g", "")
            )
        };
        assert_eq!(
            check_pipeline(&scaled("alice.log"), &policy),
            Vec::<String>::new()
        );
        let p = check_pipeline(&scaled("bob.log"), &policy);
        assert!(
            p.len() == 1 && p[0].starts_with("[scale_out] changelog = \"bob.log\""),
            "{p:#?}"
        );
    }

    #[test]
    fn names() {
        assert!(module_name("wordcount.wat").is_ok());
        assert!(module_name("a.wasm").is_ok());
        for bad in [
            "../x.wasm",
            "x/y.wasm",
            ".x.wasm",
            "x.txt",
            "pipeline.toml",
            "",
        ] {
            assert!(module_name(bad).is_err(), "{bad}");
        }
        assert!(file_name("state.tsv").is_ok());
        assert!(file_name("pipeline.toml").is_err());
        assert!(file_path("in/a.txt").is_ok());
        assert!(file_path("state.tsv").is_ok());
        for bad in [
            "in/../x",
            "../x",
            "a/b/c",
            "/a",
            "in/",
            ".in/a",
            "in/.a",
            "pipeline.toml",
        ] {
            assert!(file_path(bad).is_err(), "{bad}");
        }
    }
}
