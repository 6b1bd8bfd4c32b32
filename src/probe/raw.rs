//! The raw record both sources (the YAML file and labels) are read into before a probe is
//! resolved: every key any type accepts, each with the shape of its value (a scalar, a list, a
//! map of headers, a command), kept as text until `${VAR}` substitution. An unknown key fails
//! here, so the YAML parser can still name its line and column.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::Error as _;
use serde::Deserialize;

use super::kinds;

/// A scalar written as a string, number or boolean; kept as text until `${VAR}` substitution.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Scalar(pub(crate) String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A list written as a YAML sequence or as one comma-separated string (labels).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct List(pub(crate) Vec<Scalar>);

impl<'de> Deserialize<'de> for List {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = List;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list, or a comma-separated string")
            }
            fn visit_str<E>(self, v: &str) -> Result<List, E> {
                Ok(List(
                    v.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(|s| Scalar(s.to_string()))
                        .collect(),
                ))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<List, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Scalar>()? {
                    items.push(item);
                }
                Ok(List(items))
            }
        }
        d.deserialize_any(V)
    }
}

/// A command: a sequence runs as is, a string runs through a shell.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Command {
    /// `/bin/sh -c <string>`.
    Shell(Scalar),
    /// argv.
    Argv(Vec<Scalar>),
}

impl<'de> Deserialize<'de> for Command {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Command;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a command string or a list of arguments")
            }
            fn visit_str<E>(self, v: &str) -> Result<Command, E> {
                Ok(Command::Shell(Scalar(v.to_string())))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Command, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Scalar>()? {
                    items.push(item);
                }
                Ok(Command::Argv(items))
            }
        }
        d.deserialize_any(V)
    }
}

/// How a key's value is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// A string, number or boolean ([`Scalar`]).
    Scalar,
    /// A sequence or a comma-separated string ([`List`]).
    List,
    /// A map of header names to values (`headers.<Name>` in labels).
    Headers,
    /// A command string or argument list ([`Command`]).
    Command,
}

/// A key as written in files and labels, and the shape of its value.
pub(crate) type Key = (&'static str, Shape);

/// One value of the raw record, in the shape its key declares.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    /// See [`Shape::Scalar`].
    Scalar(Scalar),
    /// See [`Shape::List`].
    List(List),
    /// See [`Shape::Headers`].
    Headers(BTreeMap<String, Scalar>),
    /// See [`Shape::Command`].
    Command(Command),
}

/// Every key set on one probe, known keys only; which ones its type accepts is checked when it
/// is resolved.
#[derive(Debug, Default)]
pub(crate) struct RawProbe {
    /// The values by key.
    values: BTreeMap<&'static str, Value>,
}

impl RawProbe {
    /// The keys that are set, in the order of [`kinds::all_keys`], so the first wrong one
    /// reported does not depend on how the source was written.
    pub(crate) fn present(&self) -> Vec<&'static str> {
        kinds::all_keys()
            .iter()
            .copied()
            .filter(|k| self.values.contains_key(k))
            .collect()
    }

    /// Whether `key` is set.
    pub(crate) fn is_set(&self, key: &str) -> bool {
        self.values.contains_key(key)
    }

    /// Takes the value of `key` out of the record.
    pub(crate) fn take(&mut self, key: &str) -> Option<Value> {
        self.values.remove(key)
    }
}

impl<'de> Deserialize<'de> for RawProbe {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawProbe;
            // The name serde's derive gave this record when it was a struct: messages about a
            // probe that is not a map read as they always have.
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("struct RawProbe")
            }
            fn visit_unit<E>(self) -> Result<RawProbe, E> {
                Ok(RawProbe::default())
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<RawProbe, A::Error> {
                let mut seen = std::collections::BTreeSet::new();
                let mut values = BTreeMap::new();
                while let Some((key, shape)) = map.next_key_seed(KnownKey)? {
                    if !seen.insert(key) {
                        return Err(A::Error::duplicate_field(key));
                    }
                    // A key written with no value (`body: ~`) counts as not set.
                    let value = match shape {
                        Shape::Scalar => map.next_value::<Option<Scalar>>()?.map(Value::Scalar),
                        Shape::List => map.next_value::<Option<List>>()?.map(Value::List),
                        Shape::Headers => map
                            .next_value::<Option<BTreeMap<String, Scalar>>>()?
                            .map(Value::Headers),
                        Shape::Command => map.next_value::<Option<Command>>()?.map(Value::Command),
                    };
                    if let Some(value) = value {
                        values.insert(key, value);
                    }
                }
                Ok(RawProbe { values })
            }
        }
        d.deserialize_struct("RawProbe", kinds::all_keys(), V)
    }
}

/// Reads a key of the record, refusing an unknown one while the parser still points at it,
/// so the error names the key's own line and column.
struct KnownKey;

impl<'de> serde::de::DeserializeSeed<'de> for KnownKey {
    type Value = Key;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Key, D::Error> {
        d.deserialize_identifier(self)
    }
}

impl serde::de::Visitor<'_> for KnownKey {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("field identifier")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Key, E> {
        kinds::key(v).ok_or_else(|| E::unknown_field(v, kinds::all_keys()))
    }
}

/// The closest of `candidates` to `word`, if it is close enough to be a likely typo.
pub(crate) fn closest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let word = word.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| (strsim::levenshtein(&word, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// The message for an unknown key: the likely key meant, or else every key there is.
pub(crate) fn unknown_key_message(key: &str, valid: &[&str]) -> String {
    match closest(key, valid.iter().copied()) {
        Some(s) => format!("unknown key `{key}`; did you mean `{s}`?"),
        None => format!("unknown key `{key}`; valid keys: {}", valid.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use crate::probe::kinds::from_yaml;

    #[test]
    fn a_key_without_a_value_counts_as_unset() {
        let spec = from_yaml("type: tcp\nhost: db\nport: 1\ncomponent: ~").unwrap();
        assert_eq!(spec.component, "p");
    }

    #[test]
    fn an_unknown_key_is_named_on_its_own_line() {
        let e = from_yaml("type: tcp\nhost: db\ntimout: 1s").unwrap_err();
        assert!(
            e.to_string().starts_with(
                "m.yaml:5:5: probe `p`, key `timout`: unknown key `timout`; did you mean `timeout`?"
            ),
            "{e}"
        );
        let e = from_yaml("type: tcp\nhost: db\nhost: dc").unwrap_err();
        assert!(e.to_string().contains("duplicate"), "{e}");
    }

    #[test]
    fn a_value_of_the_wrong_shape_is_named_where_it_is() {
        let e = from_yaml("type: http\nurl: http://app/\nheaders: yes").unwrap_err();
        assert!(e.to_string().starts_with("m.yaml:5:"), "{e}");
    }
}
