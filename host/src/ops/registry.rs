//! Every operator, one line each. The order is the order of the
//! documentation and of the "known operators" list in messages.

use super::spec::OpDesc;
use super::*;

/// Every operator's description.
pub static OPERATORS: &[&OpDesc] = &[
    &map::MAP,
    &map::FLAT_MAP,
    &map::FILTER,
    &map::MAP_PARTITIONS,
    &transform::TRANSFORM,
    &repartition::REPARTITION,
    &repartition::UNION,
    &count::COUNT,
    &count::REDUCE,
    &count::COUNT_BY_VALUE,
    &reduce_by_key::REDUCE_BY_KEY,
    &group_by_key::GROUP_BY_KEY,
    &join::JOIN,
    &join::LEFT_OUTER_JOIN,
    &join::RIGHT_OUTER_JOIN,
    &join::FULL_OUTER_JOIN,
    &join::COGROUP,
    &window::WINDOW,
    &windowed_reduce::COUNT_BY_WINDOW,
    &windowed_reduce::REDUCE_BY_WINDOW,
    &windowed_reduce::REDUCE_BY_KEY_AND_WINDOW,
    &windowed_reduce::COUNT_BY_VALUE_AND_WINDOW,
    &state::UPDATE_STATE_BY_KEY,
    &state::MAP_WITH_STATE,
    &state_snapshots::STATE_SNAPSHOTS,
    &top::TOP,
    &transform::TRANSFORM_WITH,
    &glom::GLOM,
    &slice::SLICE,
];

/// The operator named `name`.
pub fn find(name: &str) -> Option<&'static OpDesc> {
    OPERATORS.iter().copied().find(|d| d.name == name)
}

/// The operator whose Spark name is `name`, ignoring case (for hints).
pub fn find_spark(name: &str) -> Option<&'static OpDesc> {
    OPERATORS
        .iter()
        .copied()
        .find(|d| d.spark.eq_ignore_ascii_case(name))
}

/// Operators that take parameter `key`, for messages.
pub fn takers_of(key: &str) -> Vec<&'static str> {
    OPERATORS
        .iter()
        .filter(|d| d.param(key).is_some())
        .map(|d| d.name)
        .collect()
}

/// Every parameter key of any operator, first appearance first.
pub fn all_param_keys() -> Vec<&'static str> {
    let mut keys: Vec<&'static str> = Vec::new();
    for d in OPERATORS {
        for p in d.params {
            if !keys.contains(&p.key) {
                keys.push(p.key);
            }
        }
    }
    keys
}

/// The README's operator table, generated from the descriptions.
pub fn markdown_table() -> String {
    let mut out = String::from(
        "| op | Spark name | inputs | parameters | does | result per batch |\n|----|-----------|--------|------------|------|------------------|\n",
    );
    for d in OPERATORS {
        let params: Vec<String> = d
            .params
            .iter()
            .map(|p| {
                format!(
                    "`{}`{} ({})",
                    p.key,
                    if p.required { "" } else { "?" },
                    p.kind.describe()
                )
            })
            .collect();
        let inputs = match d.arity {
            super::Arity::One => "1",
            super::Arity::Two => "2",
            super::Arity::AtLeastOne => "1+",
        };
        let does: Vec<&str> = [
            (d.shuffles, "shuffles"),
            (d.windowed, "windows"),
            (d.stateful, "keyed state"),
        ]
        .into_iter()
        .filter_map(|(yes, what)| yes.then_some(what))
        .collect();
        out.push_str(&format!(
            "| `{}`{} | `{}` | {inputs} | {} | {} | {} |\n",
            d.name,
            if d.in_pipelines { "" } else { " (API only)" },
            d.spark,
            if params.is_empty() {
                "—".to_string()
            } else {
                params.join(", ")
            },
            if does.is_empty() {
                "—".to_string()
            } else {
                does.join(", ")
            },
            d.result
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_descriptions_consistent() {
        for (i, a) in OPERATORS.iter().enumerate() {
            for b in &OPERATORS[i + 1..] {
                assert_ne!(a.name, b.name, "two operators named {}", a.name);
            }
            for p in a.params {
                assert_eq!(
                    a.params.iter().filter(|q| q.key == p.key).count(),
                    1,
                    "{}: parameter {} twice",
                    a.name,
                    p.key
                );
            }
            assert!(
                a.windowed == a.params.iter().any(|p| p.key == "length"),
                "{}: windowed operators, and only they, take a length",
                a.name
            );
        }
    }

    #[test]
    fn readme_table_matches_the_registry() {
        let readme = include_str!("../../../README.md");
        let table = markdown_table();
        assert!(
            readme.contains(&table),
            "README.md's operator table is out of date; replace it with:\n{table}"
        );
    }
}
